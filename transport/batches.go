package transport

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
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
// Following from a consumer, the events read ahead of the caller are at
// most [MaxReadBatch] waiting for it, and what the consumer has pulled
// (500 messages at most, as an ordered consumer pulls by default); an
// ESK's first event is looked up once (concurrently for the ESKs of a
// batch), never one event at a time.
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
	closed := consuming.Closed() // a goroutine each call: once
	var msgs []storedMsg
	for {
		msgs, err = in.take(ctx, closed, msgs)
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
	const prefix = "$JS.ACK."
	if len(reply) <= len(prefix) || reply[:len(prefix)] != prefix {
		return 0, 0, false
	}
	// Split the tokens from the end: at most 12, so 11 dots.
	var dots [12]int
	n := 0
	for i := len(reply) - 1; i >= len(prefix)-1 && n < len(dots); i-- {
		if reply[i] == '.' {
			dots[n] = i
			n++
		}
	}
	// dots[0] is the last dot. The dot after "$JS" is not counted, so
	// the reply has n+2 tokens.
	var sseqAt, tmAt int // which dot precedes the token, counted from the end
	switch n + 2 {
	case 9: // ... <sseq>.<cseq>.<tm>.<pending>
		sseqAt, tmAt = 3, 1
	case 11: // v2 without the trailing token
		sseqAt, tmAt = 3, 1
	case 12: // ... <sseq>.<cseq>.<tm>.<pending>.<token>
		sseqAt, tmAt = 4, 2
	default:
		return 0, 0, false
	}
	token := func(k int) string { return reply[dots[k]+1 : dots[k-1]] }
	seq, err1 := strconv.ParseUint(token(sseqAt), 10, 64)
	ts, err2 := strconv.ParseInt(token(tmAt), 10, 64)
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
	runs   map[string]*eskRun // the ESKs of the batch being numbered
	free   []*eskRun
}

// eskRun is what numbering a batch learned of one ESK: where it stood
// before the batch, and its last event in the batch.
type eskRun struct {
	prev      lastSeen // the last event delivered before the batch, if had
	had       bool
	last      lastSeen // the last event of the batch so far
	started   bool
	firstSeen lastSeen // the first event of the batch
}

func (l *Log) newBatcher(opts ReadOptions) *batcher {
	return &batcher{l: l, n: l.newNumberer(opts), fields: l.cfg.Propagator.Fields(), runs: map[string]*eskRun{}}
}

// number returns the events of msgs, in order, numbered. The slice is
// reused by the next call.
//
// It numbers as numberer.index does event by event, once per ESK of the
// batch instead: each ESK's first event in the batch follows the last
// one delivered (or is looked up, concurrently for the batch's ESKs,
// before the loop), every later one follows the one before it, and what
// the stream and the Log learned (the last event of each ESK, the facts)
// is recorded once per ESK after the loop.
func (b *batcher) number(ctx context.Context, msgs []storedMsg) ([]Event, error) {
	if err := b.n.learn(ctx, b.l, msgs); err != nil {
		return nil, err
	}
	clear(b.evs)
	b.evs = b.evs[:0]
	var run *eskRun
	runESK := ""
	for _, m := range msgs {
		esk, ok := b.l.ESKOf(m.Subject)
		if !ok {
			continue
		}
		if run == nil || esk != runESK {
			var err error
			if run, err = b.runOf(ctx, esk, m.Seq); err != nil {
				return nil, err
			}
			runESK = esk
		}
		var index uint64
		switch {
		case !run.started:
			index = run.firstSeen.index // set by runOf
			run.started = true
			run.firstSeen.seq = m.Seq
		case m.Seq == run.last.seq:
			index = run.last.index
		default:
			index = run.last.index + 1
		}
		run.last = lastSeen{index: index, seq: m.Seq}
		ev := toEvent(esk, index, m.Seq, m.Time, m.Header, m.Data)
		if len(ev.Header) == 0 {
			ev.Header = nil
		}
		b.evs = append(b.evs, ev)
	}
	b.record()
	return b.evs, nil
}

// runOf returns the run of esk in the batch, starting it at the event at
// seq if it is the ESK's first in the batch.
func (b *batcher) runOf(ctx context.Context, esk string, seq uint64) (*eskRun, error) {
	if run := b.runs[esk]; run != nil {
		return run, nil
	}
	var run *eskRun
	if k := len(b.free); k > 0 {
		run, b.free = b.free[k-1], b.free[:k-1]
		*run = eskRun{}
	} else {
		run = &eskRun{}
	}
	n := b.n
	n.mu.Lock()
	run.prev, run.had = n.last.get(esk)
	n.mu.Unlock()
	// The first event's index as numberer.index gives it (learn has
	// looked up those that need it; index looks up any it could not keep).
	index, ok := n.known(esk, seq)
	if !ok {
		var err error
		if index, err = b.l.indexOf(ctx, b.l.esk(esk), seq); err != nil {
			return nil, err
		}
	}
	run.firstSeen.index = index
	b.runs[esk] = run
	return run, nil
}

// record tells the stream's numberer and the Log's facts where each ESK
// of the batch ended, as numberer.index does after each event.
func (b *batcher) record() {
	n := b.n
	n.mu.Lock()
	for esk, run := range b.runs {
		if !run.started {
			continue
		}
		n.last.put(esk, run.last)
		if n.seen != nil {
			n.seen.add(esk)
		}
	}
	n.mu.Unlock()
	for esk, run := range b.runs {
		if run.started {
			e := b.l.esk(esk)
			first := fact{run.firstSeen.index, run.firstSeen.seq}
			if run.had && run.prev.seq != first.seq {
				e.advance(fact{run.prev.index, run.prev.seq}, first)
			} else if !run.had {
				e.add(first)
			}
			if last := (fact{run.last.index, run.last.seq}); last != first {
				e.advance(first, last)
			}
		}
		b.free = append(b.free, run)
	}
	clear(b.runs)
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
