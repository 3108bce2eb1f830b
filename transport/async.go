package transport

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// PendingWrite is an unconditional write in flight, from [Log.WriteAsync].
type PendingWrite struct {
	done chan struct{}
	pos  Position
	err  error
}

// Done is closed when the write has an outcome.
func (p *PendingWrite) Done() <-chan struct{} { return p.done }

// Result waits for the outcome: where the event landed, or the error
// [Log.Write] would return.
func (p *PendingWrite) Result() (Position, error) {
	<-p.done
	return p.pos, p.err
}

type pendingAck struct {
	esk  string
	subj string
	mark uint64 // denials seen before the publish
	size int
	paf  jetstream.PubAckFuture
	pw   *PendingWrite
	span trace.Span
}

// asyncWriter resolves the acknowledgements of async writes, in the order
// they were published, and then their indices, so that a burst of writes
// to one ESK costs one walk of the subject for many events.
type asyncWriter struct {
	once  sync.Once
	queue chan pendingAck
	stop  chan struct{}
}

// WriteAsync publishes an event to esk without waiting for the
// acknowledgement (with a span only when ctx carries a trace); the [PendingWrite] gives the position once the write is
// acknowledged and its index known. Use it to pipeline many writes; the
// number in flight is bounded by the JetStream publisher's own limit (4000
// by default), past which WriteAsync waits up to the log's timeout for
// acknowledgements to come back.
//
// Errors: as [Log.Write]; errors of the publish itself come back here,
// errors of the outcome from [PendingWrite.Result].
func (l *Log) WriteAsync(ctx context.Context, esk string, payload []byte, opts ...WriteOption) (*PendingWrite, error) {
	span := noSpan // a span only inside a caller's trace, as for PublishAsync
	if trace.SpanContextFromContext(ctx).IsValid() {
		ctx, span = l.startSpan(ctx, "detbus.write", esk)
	}
	m, err := l.newMsg(ctx, esk, payload, opts)
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	l.async.once.Do(func() {
		l.async.queue = make(chan pendingAck, 16384)
		l.async.stop = make(chan struct{})
		go l.resolveAcks()
	})
	select {
	case <-l.async.stop:
		endSpan(span, ErrClosed)
		return nil, ErrClosed
	default:
	}
	mark, _ := l.denied.mark()
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.cfg.Timeout))
	if err != nil {
		err = fmt.Errorf("%w: publish to %q: %v", ErrUnavailable, esk, err)
		endSpan(span, err)
		return nil, err
	}
	pw := &PendingWrite{done: make(chan struct{})}
	select {
	case l.async.queue <- pendingAck{esk: esk, subj: m.Subject, mark: mark, size: len(payload), paf: paf, pw: pw, span: span}:
	case <-l.async.stop:
		return nil, ErrClosed
	}
	return pw, nil
}

// resolveAcks completes pending writes in the order they were published.
// It takes what is queued (up to a batch), waits for those
// acknowledgements, and learns the indices of each ESK's run of writes
// with one request ([eskDir.confirmRun]), walking only when other writes
// are interleaved.
func (l *Log) resolveAcks() {
	const maxRun = 1000
	batch := make([]pendingAck, 0, maxRun)
	for {
		batch = batch[:0]
		select {
		case p := <-l.async.queue:
			batch = append(batch, p)
		case <-l.async.stop:
			return
		}
	gather:
		for len(batch) < maxRun {
			select {
			case p := <-l.async.queue:
				batch = append(batch, p)
			default:
				break gather
			}
		}
		l.resolveBatch(batch)
	}
}

func (l *Log) resolveBatch(batch []pendingAck) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	type run struct {
		seqs  []uint64
		bytes int
		items []*pendingAck
	}
	runs := map[string]*run{}
	var order []string
	for i := range batch {
		p := &batch[i]
		seq, err := l.awaitAck(ctx, p)
		if err != nil {
			l.finish(p, err)
			continue
		}
		r := runs[p.esk]
		if r == nil {
			r = &run{}
			runs[p.esk] = r
			order = append(order, p.esk)
		}
		r.seqs = append(r.seqs, seq)
		r.bytes += p.size
		r.items = append(r.items, p)
	}
	for _, esk := range order {
		r := runs[esk]
		e := l.esk(esk)
		if _, known := e.below(r.seqs[0]); !known && len(r.items) > 0 {
			// Learn the first write's index; the rest of the run follows it.
			p := r.items[0]
			idx, err := l.indexOf(ctx, e, p.pw.pos.Seq)
			if err != nil {
				err = fmt.Errorf("transport: event stored at sequence %d but its index is unknown: %w", p.pw.pos.Seq, err)
			}
			p.pw.pos.Index = idx
			l.finish(p, err)
			r.items, r.seqs = r.items[1:], r.seqs[1:]
		}
		if len(r.items) == 0 {
			continue
		}
		if first, ok, _ := l.confirmRun(ctx, e, r.seqs, r.bytes+len(r.seqs)*(len(e.subject)+64)); ok {
			for i, p := range r.items {
				p.pw.pos.Index = first + uint64(i)
				l.finish(p, nil)
			}
			continue
		}
		for _, p := range r.items {
			idx, err := l.indexOf(ctx, e, p.pw.pos.Seq)
			if err != nil {
				err = fmt.Errorf("transport: event stored at sequence %d but its index is unknown: %w", p.pw.pos.Seq, err)
			}
			p.pw.pos.Index = idx
			l.finish(p, err)
		}
	}
}

func (l *Log) awaitAck(ctx context.Context, p *pendingAck) (uint64, error) {
	_, denied := l.denied.mark()
	if err := l.denied.deniedSince(p.mark, p.esk, p.subj); err != nil {
		return 0, err
	}
	for {
		select {
		case ack := <-p.paf.Ok():
			p.pw.pos = Position{ESK: p.esk, Seq: ack.Sequence}
			return ack.Sequence, nil
		case err := <-p.paf.Err():
			return 0, l.publishErr(p.esk, err)
		case <-denied:
			// A publish was refused; this one, if the subject is its.
			if err := l.denied.deniedSince(p.mark, p.esk, p.subj); err != nil {
				return 0, err
			}
			_, denied = l.denied.mark()
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: no acknowledgement for ESK %q within %v, the event may have been stored", ErrUnavailable, p.esk, l.cfg.Timeout)
		case <-l.async.stop:
			return 0, ErrClosed
		}
	}
}

func (l *Log) finish(p *pendingAck, err error) {
	p.pw.err = err
	endSpan(p.span, err, attribute.Int64("detbus.index", int64(p.pw.pos.Index)), attribute.Int64("detbus.seq", int64(p.pw.pos.Seq)))
	close(p.pw.done)
}

// PendingPublish is an unconditional write in flight, from
// [Log.PublishAsync]: its outcome is the stream position, without the
// index.
type PendingPublish struct {
	l        *Log
	esk      string
	subject  string
	mark     uint64 // denials seen before the publish
	deadline time.Time
	paf      jetstream.PubAckFuture
	span     trace.Span

	mu    sync.Mutex
	final bool // pos and err are the outcome
	pos   Position
	err   error
}

// PublishAsync publishes an event to esk without waiting for the
// acknowledgement, and without learning its index: the cheapest write,
// for sources that pipeline many events. It makes a span only when ctx
// carries a trace. [PendingPublish.Wait] gives the
// stream position once acknowledged; [Log.IndexOf] finds the index when
// it is needed. The number in flight is bounded by the JetStream
// publisher's own limit (4000 by default), past which PublishAsync waits
// up to the log's timeout.
//
// Errors: as [Log.Write]; errors of the publish itself come back here,
// errors of the outcome from [PendingPublish.Wait].
func (l *Log) PublishAsync(ctx context.Context, esk string, payload []byte, opts ...WriteOption) (*PendingPublish, error) {
	span := noSpan // a span only inside a caller's trace: this is the hot path of sources
	if trace.SpanContextFromContext(ctx).IsValid() {
		ctx, span = l.startSpan(ctx, "detbus.write", esk)
	}
	m, err := l.newMsg(ctx, esk, payload, opts)
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	mark, _ := l.denied.mark()
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.cfg.Timeout))
	if err != nil {
		err = fmt.Errorf("%w: publish to %q: %v", ErrUnavailable, esk, err)
		endSpan(span, err)
		return nil, err
	}
	return &PendingPublish{l: l, esk: esk, subject: m.Subject, mark: mark, deadline: time.Now().Add(l.cfg.Timeout), paf: paf, span: span}, nil
}

// Wait waits for the outcome until ctx ends or the log's timeout after the
// publish passes: the stream position (Seq; Index is 0), or the error
// [Log.Publish] would return. Once it has an outcome, every call returns
// the same.
func (p *PendingPublish) Wait(ctx context.Context) (Position, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.final {
		return p.pos, p.err
	}
	pos, err := p.wait(ctx)
	if ctx.Err() != nil && err != nil {
		return pos, err // ctx ended first: the outcome is still to come
	}
	p.final, p.pos, p.err = true, pos, err
	endSpan(p.span, err, attribute.Int64("detbus.seq", int64(pos.Seq)))
	return pos, err
}

// Result is Wait without a context of its own.
func (p *PendingPublish) Result() (Position, error) { return p.Wait(context.Background()) }

func (p *PendingPublish) wait(ctx context.Context) (Position, error) {
	l := p.l
	select { // acknowledged already: no timer
	case ack := <-p.paf.Ok():
		return Position{ESK: p.esk, Seq: ack.Sequence}, nil
	case err := <-p.paf.Err():
		return Position{}, l.publishErr(p.esk, err)
	default:
	}
	timer := time.NewTimer(time.Until(p.deadline))
	defer timer.Stop()
	_, denied := l.denied.mark()
	for {
		if err := l.denied.deniedSince(p.mark, p.esk, p.subject); err != nil {
			return Position{}, err
		}
		select {
		case ack := <-p.paf.Ok():
			return Position{ESK: p.esk, Seq: ack.Sequence}, nil
		case err := <-p.paf.Err():
			return Position{}, l.publishErr(p.esk, err)
		case <-denied:
			_, denied = l.denied.mark()
		case <-timer.C:
			return Position{}, fmt.Errorf("%w: no acknowledgement for ESK %q within %v, the event may have been stored", ErrUnavailable, p.esk, l.cfg.Timeout)
		case <-ctx.Done():
			return Position{}, fmt.Errorf("%w: no acknowledgement for ESK %q: %v, the event may have been stored", ErrUnavailable, p.esk, ctx.Err())
		}
	}
}
