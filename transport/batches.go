package transport

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Batches streams the same events as [Log.Events], in the same order,
// in batches: each yielded slice holds every event that arrived while
// the caller handled the previous one, at most [MaxReadBatch]. It is the
// read for a caller that folds the log: following it costs one
// consumer, as Events does, but no goroutine hand-off, lock or lookup
// per event, so that a fold keeps up with the log's delivery.
//
// The slice is the caller's until the next iteration: the events may be
// kept, the slice may not. An event that carries trace context gets a
// receive span (detbus.receive) covering its batch.
//
// Following from a consumer, the events are read ahead of the caller by
// at most [MaxReadBatch]; an ESK's first event is looked up once per ESK
// (concurrently for the ESKs of a batch), never one event at a time.
// Reading without Follow, or as a user who may not create consumers, it
// reads as Events does and hands on the events in batches.
//
// The sequence yields a non-nil error once and stops, as Events does:
// [ErrInvalidESK] for a bad pattern, [ErrUnavailable] when NATS does not
// answer or the consumer is lost. It ends without error when ctx is done
// or, without Follow, at the head. Breaking out of the loop releases the
// consumer.
func (l *Log) Batches(ctx context.Context, patterns []string, opts ReadOptions) iter.Seq2[[]Event, error] {
	return func(yield func([]Event, error) bool) {
		if err := l.batches(ctx, patterns, opts, yield); err != nil {
			yield(nil, err)
		}
	}
}

// MaxReadBatch bounds the events of one batch of [Log.Batches].
const MaxReadBatch = 4096

func (l *Log) batches(ctx context.Context, patterns []string, opts ReadOptions, yield func([]Event, error) bool) error {
	if len(patterns) == 0 {
		patterns = []string{">"}
	}
	filters := make([]string, len(patterns))
	for i, p := range patterns {
		if err := ValidateESKPattern(p); err != nil {
			return err
		}
		filters[i] = l.Subject(p)
	}
	if !opts.Follow || l.noConsumers.Load() {
		return l.batchesOfEvents(ctx, patterns, opts, yield)
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if opts.From > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.From
	}
	octx, cancel := l.withTimeout(ctx)
	cons, err := l.js.OrderedConsumer(octx, l.cfg.Stream, cc)
	cancel()
	if err != nil {
		return fmt.Errorf("%w: consumer on %q: %v", ErrUnavailable, l.cfg.Stream, err)
	}
	in := newInbox()
	consuming, err := cons.Consume(in.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { in.failed(err) }))
	if err != nil {
		return fmt.Errorf("%w: consume %q: %v", ErrUnavailable, l.cfg.Stream, err)
	}
	defer func() {
		in.stop()
		consuming.Stop()
	}()
	b := l.newBatcher(opts)
	var msgs []storedMsg
	for {
		msgs, err = in.take(ctx, consuming.Closed(), msgs)
		if err != nil || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: consume %q: %v", ErrUnavailable, l.cfg.Stream, err)
		}
		evs, err := b.number(ctx, msgs)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !b.yield(ctx, evs, yield) {
			return nil
		}
	}
}

// batchesOfEvents hands on the events of Events in batches: a goroutine
// reads them while the caller handles the previous batch.
func (l *Log) batchesOfEvents(ctx context.Context, patterns []string, opts ReadOptions, yield func([]Event, error) bool) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs := make(chan Event, MaxReadBatch)
	failed := make(chan error, 1)
	go func() {
		defer close(evs)
		for ev, err := range l.Events(rctx, patterns, opts) {
			if err != nil {
				failed <- err
				return
			}
			select {
			case evs <- ev:
			case <-rctx.Done():
				return
			}
		}
	}()
	batch := make([]Event, 0, MaxReadBatch)
	for ev := range evs {
		batch = append(batch[:0], ev)
	more:
		for len(batch) < MaxReadBatch {
			select {
			case ev, ok := <-evs:
				if !ok {
					break more
				}
				batch = append(batch, ev)
			default:
				break more
			}
		}
		if !yield(batch, nil) {
			return nil
		}
		clear(batch)
	}
	select {
	case err := <-failed:
		return err
	default:
		return nil
	}
}

// inbox holds the messages a consumer delivered that the reader has not
// taken yet, at most MaxReadBatch: a delivery that finds it full waits, and
// the consumer's pulls wait with it.
type inbox struct {
	mu      sync.Mutex
	msgs    []storedMsg
	err     error         // the consumer's last error, for when it is lost
	ready   chan struct{} // a message arrived
	room    chan struct{} // the reader took what there was
	stopped chan struct{} // the reader is gone

	// deliver is held by a delivery for as long as it waits for room:
	// when the ordered consumer replaces its consumer meanwhile, the
	// next delivery (from the new one) waits behind it, so the messages
	// stay in order.
	deliver sync.Mutex
}

func newInbox() *inbox {
	return &inbox{ready: make(chan struct{}, 1), room: make(chan struct{}, 1), stopped: make(chan struct{})}
}

func (in *inbox) handle(m jetstream.Msg) {
	seq, ts, ok := ackSeqTime(m.Reply())
	if !ok {
		in.failed(fmt.Errorf("transport: consumed a message without metadata (reply %q)", m.Reply()))
		return
	}
	sm := storedMsg{Subject: m.Subject(), Seq: seq, Time: time.Unix(0, ts).UTC(), Header: m.Headers(), Data: m.Data()}
	in.deliver.Lock()
	defer in.deliver.Unlock()
	for {
		in.mu.Lock()
		if len(in.msgs) < MaxReadBatch {
			in.msgs = append(in.msgs, sm)
			in.mu.Unlock()
			select {
			case in.ready <- struct{}{}:
			default:
			}
			return
		}
		in.mu.Unlock()
		select {
		case <-in.room:
		case <-in.stopped:
			return
		}
	}
}

func (in *inbox) failed(err error) {
	in.mu.Lock()
	in.err = err
	in.mu.Unlock()
}

// take waits for messages and returns them all, leaving spare (emptied)
// to be filled next.
func (in *inbox) take(ctx context.Context, closed <-chan struct{}, spare []storedMsg) ([]storedMsg, error) {
	clear(spare)
	for {
		in.mu.Lock()
		if len(in.msgs) > 0 {
			out := in.msgs
			in.msgs = spare[:0]
			in.mu.Unlock()
			select {
			case in.room <- struct{}{}:
			default:
			}
			return out, nil
		}
		in.mu.Unlock()
		select {
		case <-in.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-closed:
			in.mu.Lock()
			err := in.err
			in.mu.Unlock()
			if err == nil {
				err = errors.New("the consumer stopped")
			}
			return nil, err
		}
	}
}

func (in *inbox) stop() { close(in.stopped) }

// ackSeqTime reads the stream sequence and the stored time (Unix
// nanoseconds) from the reply subject of a consumed message:
// "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>",
// or with "<domain>.<account hash>." before the stream and a token after
// the pending count.
func ackSeqTime(reply string) (seq uint64, ts int64, ok bool) {
	rest, found := strings.CutPrefix(reply, "$JS.ACK.")
	if !found {
		return 0, 0, false
	}
	skip := 3 // stream, consumer, delivered
	switch strings.Count(rest, ".") + 3 {
	case 9:
	case 11, 12:
		skip = 5
	default:
		return 0, 0, false
	}
	for range skip {
		_, rest, _ = strings.Cut(rest, ".")
	}
	sseq, rest, _ := strings.Cut(rest, ".")
	_, rest, _ = strings.Cut(rest, ".") // the consumer sequence
	tm, _, _ := strings.Cut(rest, ".")
	seq, err1 := strconv.ParseUint(sseq, 10, 64)
	ts, err2 := strconv.ParseInt(tm, 10, 64)
	return seq, ts, err1 == nil && err2 == nil && seq > 0
}

// batcher turns the messages of a stream into events: it numbers them
// (see numberer) and starts receive spans.
type batcher struct {
	l      *Log
	n      *numberer
	fields []string // the propagator's, to tell an event with trace context
	evs    []Event
	spans  []trace.Span
}

func (l *Log) newBatcher(opts ReadOptions) *batcher {
	return &batcher{l: l, n: l.newNumberer(opts), fields: l.cfg.Propagator.Fields()}
}

// number returns the events of msgs, in order, numbered. The slice is
// reused by the next call.
func (b *batcher) number(ctx context.Context, msgs []storedMsg) ([]Event, error) {
	if err := b.n.learn(ctx, b.l, msgs); err != nil {
		return nil, err
	}
	clear(b.evs)
	b.evs = b.evs[:0]
	for _, m := range msgs {
		esk, ok := b.l.ESKOf(m.Subject)
		if !ok {
			continue
		}
		index, err := b.n.index(ctx, esk, m.Seq)
		if err != nil {
			return nil, err
		}
		ev := toEvent(esk, index, m.Seq, m.Time, m.Header, m.Data)
		if len(ev.Header) == 0 {
			ev.Header = nil
		}
		b.evs = append(b.evs, ev)
	}
	return b.evs, nil
}

// yield hands evs on, within the receive spans of those that carry trace
// context, and reports whether to go on.
func (b *batcher) yield(ctx context.Context, evs []Event, yield func([]Event, error) bool) bool {
	if len(evs) == 0 {
		return true
	}
	b.l.delivered.Add(uint64(len(evs)))
	b.spans = b.spans[:0]
	for i := range evs {
		ev := &evs[i]
		if !hasTraceContext(ev.Header, b.fields) {
			continue
		}
		_, span := b.l.cfg.Tracer.Start(b.l.cfg.Propagator.Extract(ctx, HeaderCarrier(ev.Header)),
			"detbus.receive", trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", b.l.Subject(ev.ESK)),
				attribute.String("detbus.esk", ev.ESK),
				attribute.Int64("detbus.index", int64(ev.Index)), attribute.Int64("detbus.seq", int64(ev.Seq)),
				attribute.Int("detbus.batch", len(evs)))
		}
		b.spans = append(b.spans, span)
	}
	cont := yield(evs, nil)
	for _, s := range b.spans {
		s.End()
	}
	clear(b.spans)
	return cont
}
