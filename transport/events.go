package transport

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/textproto"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
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

	// Per ESK, the last index and sequence delivered, for the ESKs seen
	// most recently; an ESK forgotten is looked up again when it reappears.
	last := newLRU[lastSeen](eventsESKs)
	var seen *seenSet // from the log's start: the ESKs met so far
	if opts.From <= 1 {
		seen = newSeenSet()
	}
	traceFields := l.cfg.Propagator.Fields()
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
		var index uint64
		e := l.esk(esk)
		if prev, ok := last.get(esk); ok {
			index = prev.index + 1
			e.advance(fact{prev.index, prev.seq}, fact{index, seq})
		} else if seen != nil && !seen.has(esk) {
			// The consumer started at the log's start and has not met
			// this ESK: this is its first event.
			index = 0
			e.add(fact{0, seq})
		} else if index, err = l.indexOf(ctx, e, seq); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		last.put(esk, lastSeen{index: index, seq: seq})
		if seen != nil {
			seen.add(esk)
		}
		l.delivered.Add(1)
		ev := toEvent(esk, index, seq, md.Timestamp, msg.Headers(), msg.Data())
		if len(ev.Header) == 0 {
			ev.Header = nil
		}
		// A receive span joins the writer's trace; an event written outside
		// any trace gets none, which spares every untraced event the cost.
		span := noSpan
		if hasTraceContext(msg.Headers(), traceFields) {
			_, span = l.cfg.Tracer.Start(l.cfg.Propagator.Extract(ctx, propagation.HeaderCarrier(msg.Headers())),
				"detbus.receive", trace.WithSpanKind(trace.SpanKindConsumer))
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.system", "nats"),
				attribute.String("messaging.destination.name", msg.Subject()),
				attribute.String("detbus.esk", esk),
				attribute.Int64("detbus.index", int64(index)), attribute.Int64("detbus.seq", int64(seq)))
		}
		cont := yield(ev, nil)
		span.End()
		if !cont || (!opts.Follow && (seq >= head || md.NumPending == 0)) {
			return nil
		}
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
