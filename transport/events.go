package transport

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// ReadOptions says where a stream of events starts and whether it ends.
type ReadOptions struct {
	// From is the stream sequence to start at; 0 and 1 both mean the
	// beginning of the log.
	From uint64
	// Follow keeps the stream open for events written later. Without it
	// the stream ends at the log's head as of the call.
	Follow bool
}

// Events streams the events of the ESKs matching patterns (literal ESKs or
// wildcards; none means all) in the log's total order, each with its ESK,
// index, stream sequence, HLC time (the stored time for events without the
// header), headers and payload. It is backed by an ordered JetStream
// consumer that recovers from gaps and reconnects by itself.
//
// The sequence yields a non-nil error once and stops: [ErrInvalidESK] for a
// bad pattern, [ErrUnavailable] when NATS does not answer. It ends without
// error when ctx is done or, without Follow, at the head. Breaking out of
// the loop releases the consumer.
func (l *Log) Events(ctx context.Context, patterns []string, opts ReadOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		if err := l.events(ctx, patterns, opts, yield); err != nil {
			yield(Event{}, err)
		}
	}
}

func (l *Log) events(ctx context.Context, patterns []string, opts ReadOptions, yield func(Event, error) bool) error {
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
	n := l.newNumberer(opts)
	if l.noConsumers.Load() || (!opts.Follow && len(filters) == 1 && !l.replicated()) {
		return l.eventsDirect(ctx, filters, opts, n, yield)
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if opts.From > 1 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.From
	}
	octx, cancel := l.withTimeout(ctx)
	cons, err := l.js.OrderedConsumer(octx, l.cfg.Stream, cc)
	if err != nil {
		cancel()
		return fmt.Errorf("%w: consumer on %q: %v", ErrUnavailable, l.cfg.Stream, err)
	}
	var head uint64
	if !opts.Follow {
		info, err := cons.Info(octx)
		if err != nil {
			cancel()
			return fmt.Errorf("%w: consumer info: %v", ErrUnavailable, err)
		}
		if info.NumPending == 0 {
			cancel()
			return nil
		}
		st, err := l.info(octx, "")
		if err != nil {
			cancel()
			return err
		}
		head = st.State.LastSeq
	}
	cancel()
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("%w: consume %q: %v", ErrUnavailable, l.cfg.Stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("%w: consume %q: %v", ErrUnavailable, l.cfg.Stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("transport: consumed message without metadata: %w", err)
		}
		esk, ok := l.ESKOf(msg.Subject())
		if !ok {
			continue
		}
		seq := md.Sequence.Stream
		index, err := n.index(ctx, esk, seq)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !l.deliver(ctx, esk, index, seq, md.Timestamp, msg.Headers(), msg.Data(), yield) ||
			(!opts.Follow && (seq >= head || md.NumPending == 0)) {
			return nil
		}
	}
}

// eventsDirect reads the events with batched direct gets instead of a
// consumer: for a read up to the head from a stream one server answers
// (no consumer to create, the ESKs met in a batch numbered concurrently),
// and for every read of a user who may not create consumers. Following,
// it waits for more on a plain subscription to the ESKs' subjects, which
// only wakes it: what it delivers is what the stream stored. Several
// patterns are read through the subject that covers them all and picked
// here.
func (l *Log) eventsDirect(ctx context.Context, filters []string, opts ReadOptions, n *numberer, yield func(Event, error) bool) error {
	filter, pick := filters[0], func(string) bool { return true }
	if len(filters) > 1 {
		filter = coveringFilter(filters)
		pick = func(subject string) bool { return matchesAny(filters, subject) }
	}
	var wake chan struct{}
	if opts.Follow {
		wake = make(chan struct{}, 1)
		for _, f := range filters {
			sub, err := l.nc.Subscribe(f, func(*nats.Msg) {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			if err != nil {
				return fmt.Errorf("%w: subscribe to %s: %v", ErrUnavailable, f, err)
			}
			defer sub.Unsubscribe()
		}
		if err := l.nc.Flush(); err != nil {
			return fmt.Errorf("%w: subscribe to %s: %v", ErrUnavailable, filter, err)
		}
	}
	// Without Follow, the read ends at the last event of the filter that
	// the stream leader holds now, or the head, whichever comes first.
	var end uint64
	if !opts.Follow {
		octx, cancel := l.withTimeout(ctx)
		st, err := l.info(octx, "")
		var last storedMsg
		found := false
		if err == nil {
			last, found, err = l.leaderLast(octx, filter)
		}
		cancel()
		if err != nil || !found {
			return err
		}
		end = min(last.Seq, st.State.LastSeq)
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	backoff := time.Millisecond
	recheck := 0
	for next := max(opts.From, 1); opts.Follow || next <= end; {
		octx, cancel := l.withTimeout(ctx)
		rep, err := l.gets.do(octx, directGetRequest{Seq: next, NextFor: filter, Batch: walkBatch, MaxBytes: walkMaxBytes})
		msgs := make([]storedMsg, 0, len(rep.msgs))
		for _, m := range rep.msgs {
			if (opts.Follow || m.Seq <= end) && pick(m.Subject) {
				msgs = append(msgs, m)
			}
		}
		if err == nil {
			err = n.learn(octx, l, msgs)
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, m := range msgs {
			esk, ok := l.ESKOf(m.Subject)
			if !ok {
				continue
			}
			index, err := n.index(ctx, esk, m.Seq)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if !l.deliver(ctx, esk, index, m.Seq, m.Time, m.Header, m.Data, yield) {
				return nil
			}
		}
		if len(rep.msgs) > 0 {
			next = rep.msgs[len(rep.msgs)-1].Seq + 1
			backoff, recheck = time.Millisecond, 0
			continue
		}
		// Nothing at or after next on the server that answered: a replica
		// behind, or the end of what is stored.
		if !opts.Follow {
			if err := sleepCtx(ctx, backoff); err != nil {
				return nil
			}
			backoff = min(2*backoff, 50*time.Millisecond)
			continue
		}
		if recheck > 0 {
			// A copy was woken by its origin's write, which the mirror
			// stores a moment later: look again soon.
			recheck--
			if err := sleepCtx(ctx, copyRecheck); err != nil {
				return nil
			}
			continue
		}
		select {
		case <-wake:
			if l.cfg.copyOf != "" {
				recheck = copyRechecks
			}
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// A copy of another site's log woken by a write at the origin looks for
// it copyRechecks times, copyRecheck apart, before it waits again.
const (
	copyRecheck  = 2 * time.Millisecond
	copyRechecks = 25
)

// followPoll is how often a stream that follows without a consumer asks
// for more when nothing woke it: a subscription can miss what a server
// stored while the connection was down.
const followPoll = 500 * time.Millisecond

// coveringFilter is the narrowest subject with a wildcard that matches
// every filter: their common leading tokens and ">".
func coveringFilter(filters []string) string {
	common := strings.Split(filters[0], ".")
	for _, f := range filters[1:] {
		t := strings.Split(f, ".")
		k := 0
		for k < len(common) && k < len(t) && common[k] == t[k] && common[k] != "*" && common[k] != ">" {
			k++
		}
		common = common[:k]
	}
	for _, f := range filters {
		if n := strings.Count(f, ".") + 1; n == len(common) {
			common = common[:n-1] // "a.b.>" does not match "a.b" itself
		}
	}
	if len(common) == 0 {
		return ">"
	}
	return strings.Join(common, ".") + ".>"
}

// deliver yields one event, in a receive span when it carries trace
// context, and reports whether to go on.
func (l *Log) deliver(ctx context.Context, esk string, index, seq uint64, stored time.Time, h nats.Header, data []byte, yield func(Event, error) bool) bool {
	l.delivered.Add(1)
	ev := toEvent(esk, index, seq, stored, h, data)
	if len(ev.Header) == 0 {
		ev.Header = nil
	}
	l.feedClock(ev.Time)
	// A receive span joins the writer's trace; an event written outside
	// any trace gets none, which spares every untraced event the cost.
	span := noSpan
	if hasTraceContext(h, l.cfg.Propagator.Fields()) {
		_, span = l.cfg.Tracer.Start(l.cfg.Propagator.Extract(ctx, HeaderCarrier(h)),
			"detbus.receive", trace.WithSpanKind(trace.SpanKindConsumer))
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", l.Subject(esk)),
			attribute.String("detbus.esk", esk),
			attribute.Int64("detbus.index", int64(index)), attribute.Int64("detbus.seq", int64(seq)))
	}
	cont := yield(ev, nil)
	span.End()
	return cont
}

// numberer gives the events of a stream their indices: each ESK's next
// event follows the last one delivered, and an ESK met for the first time
// is looked up, unless the stream started at the log's start.
type numberer struct {
	mu   sync.Mutex
	last *lru[lastSeen] // per ESK met recently: the last index and sequence delivered
	seen *seenSet       // from the log's start: the ESKs met so far
	l    *Log
}

func (l *Log) newNumberer(opts ReadOptions) *numberer {
	n := &numberer{l: l, last: newLRU[lastSeen](eventsESKs)}
	if opts.From <= 1 {
		n.seen = newSeenSet()
	}
	return n
}

// known returns the index of the event at seq of esk if it needs no
// lookup.
func (n *numberer) known(esk string, seq uint64) (uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if prev, ok := n.last.get(esk); ok {
		if prev.seq == seq {
			return prev.index, true
		}
		return prev.index + 1, true
	}
	if n.seen != nil && !n.seen.has(esk) {
		// The stream started at the log's start and has not met this
		// ESK: this is its first event.
		return 0, true
	}
	return 0, false
}

// index numbers the event at seq of esk, the next event of the stream.
func (n *numberer) index(ctx context.Context, esk string, seq uint64) (uint64, error) {
	e := n.l.esk(esk)
	index, ok := n.known(esk, seq)
	if !ok {
		var err error
		if index, err = n.l.indexOf(ctx, e, seq); err != nil {
			return 0, err
		}
	}
	n.mu.Lock()
	prev, had := n.last.get(esk)
	n.last.put(esk, lastSeen{index: index, seq: seq})
	if n.seen != nil {
		n.seen.add(esk)
	}
	n.mu.Unlock()
	if had && prev.seq != seq {
		e.advance(fact{prev.index, prev.seq}, fact{index, seq})
	} else if !had {
		e.add(fact{index, seq})
	}
	return index, nil
}

// learn looks up, concurrently, the ESKs of msgs that need a lookup (the
// first event of each), so that numbering the batch waits for one round
// of lookups instead of one after another.
func (n *numberer) learn(ctx context.Context, l *Log, msgs []storedMsg) error {
	first := map[string]uint64{}
	for _, m := range msgs {
		esk, ok := l.ESKOf(m.Subject)
		if !ok {
			continue
		}
		if _, dup := first[esk]; dup {
			continue
		}
		if _, ok := n.known(esk, m.Seq); !ok {
			first[esk] = m.Seq
		} else {
			first[esk] = 0
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, 1)
	for esk, seq := range first {
		if seq == 0 {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			index, err := l.indexOf(ctx, l.esk(esk), seq)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			n.mu.Lock()
			n.last.put(esk, lastSeen{index: index, seq: seq})
			n.mu.Unlock()
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

type lastSeen struct{ index, seq uint64 }

// eventsESKs bounds the ESKs a stream of events numbers without lookups
// (about 100 bytes each): an ESK forgotten is looked up again when it
// reappears.
const eventsESKs = 1 << 16

// noSpan is the span of an event that carries no trace context.
var noSpan = trace.SpanFromContext(context.Background())

// hasTraceContext reports whether h holds any of the propagator's fields,
// as written (a nats CLI user's "traceparent") or canonicalised as the
// propagator's HeaderCarrier writes them ("Traceparent").
func hasTraceContext(h nats.Header, fields []string) bool {
	if len(h) == 0 {
		return false
	}
	for _, f := range fields {
		if _, ok := h[f]; ok {
			return true
		}
		if _, ok := h[textproto.CanonicalMIMEHeaderKey(f)]; ok {
			return true
		}
	}
	return false
}
