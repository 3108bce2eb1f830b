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
	if _, err := l.followLinks(esk); err != nil {
		endSpan(span, err)
		return nil, err
	}
	paf, err := l.js.PublishMsgAsync(m, jetstream.WithStallWait(l.cfg.Timeout))
	if err != nil {
		err = fmt.Errorf("%w: publish to %q: %v", ErrUnavailable, esk, err)
		endSpan(span, err)
		return nil, err
	}
	pw := &PendingWrite{done: make(chan struct{})}
	select {
	case l.async.queue <- pendingAck{esk: esk, paf: paf, pw: pw, span: span}:
	case <-l.async.stop:
		return nil, ErrClosed
	}
	return pw, nil
}

func (l *Log) resolveAcks() {
	for {
		var p pendingAck
		select {
		case p = <-l.async.queue:
		case <-l.async.stop:
			return
		}
		p.pw.err = l.resolveAck(p)
		endSpan(p.span, p.pw.err, attribute.Int64("detbus.index", int64(p.pw.pos.Index)), attribute.Int64("detbus.seq", int64(p.pw.pos.Seq)))
		close(p.pw.done)
	}
}

func (l *Log) resolveAck(p pendingAck) error {
	var ack *jetstream.PubAck
	select { // the common case: the ack is already here
	case ack = <-p.paf.Ok():
	case err := <-p.paf.Err():
		return l.publishErr(p.esk, err)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	if ack == nil {
		select {
		case ack = <-p.paf.Ok():
		case err := <-p.paf.Err():
			return l.publishErr(p.esk, err)
		case <-ctx.Done():
			return fmt.Errorf("%w: no acknowledgement for ESK %q within %v, the event may have been stored", ErrUnavailable, p.esk, l.cfg.Timeout)
		case <-l.async.stop:
			return ErrClosed
		}
	}
	p.pw.pos = Position{ESK: p.esk, Seq: ack.Sequence}
	idx, err := l.dir(p.esk).indexOf(ctx, l.gets, ack.Sequence)
	if err != nil {
		return fmt.Errorf("transport: event stored at sequence %d but its index is unknown: %w", ack.Sequence, err)
	}
	p.pw.pos.Index = idx
	return nil
}
