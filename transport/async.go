package transport

import (
	"context"
	"fmt"
	"sync"

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
// acknowledgement; the [PendingWrite] gives the position once the write is
// acknowledged and its index known. Use it to pipeline many writes; the
// number in flight is bounded by the JetStream publisher's own limit (4000
// by default), past which WriteAsync waits up to the log's timeout for
// acknowledgements to come back.
//
// Errors: as [Log.Write]; errors of the publish itself come back here,
// errors of the outcome from [PendingWrite.Result].
func (l *Log) WriteAsync(ctx context.Context, esk string, payload []byte, opts ...WriteOption) (*PendingWrite, error) {
	ctx, span := l.startSpan(ctx, "detbus.write", esk)
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
		d := l.dir(esk)
		if first, ok, _ := d.confirmRun(ctx, l.gets, r.seqs, r.bytes+len(r.seqs)*(len(d.subject)+64)); ok {
			for i, p := range r.items {
				p.pw.pos.Index = first + uint64(i)
				l.finish(p, nil)
			}
			continue
		}
		for _, p := range r.items {
			idx, err := d.indexOf(ctx, l.gets, p.pw.pos.Seq)
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
