package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WriteOption adds to an event being written.
type WriteOption func(*writeConfig)

type writeConfig struct {
	header nats.Header // allocated by the first option that sets one
	hlc    bool
}

func (w *writeConfig) set(key, value string) {
	if w.header == nil {
		w.header = nats.Header{}
	}
	w.header.Set(key, value)
}

// WithContentType sets the payload's content type header ("" leaves it
// unset, which readers take as JSON).
func WithContentType(ct string) WriteOption {
	return func(w *writeConfig) {
		if ct != "" {
			w.set(HeaderContentType, ct)
		}
	}
}

// WithHeader sets a header on the event.
func WithHeader(key, value string) WriteOption {
	return func(w *writeConfig) { w.set(key, value) }
}

// WithHLC stamps the event with the log's hybrid logical clock
// ([HeaderHLC]). Events are stamped only with this option or
// [Config.StampHLC], since every header costs throughput and readers fall
// back to the stream's timestamp.
func WithHLC() WriteOption {
	return func(w *writeConfig) { w.hlc = true }
}

// Outcome is how a conditional append ended.
type Outcome uint8

const (
	// Written: this call stored the event at the index.
	Written Outcome = iota + 1
	// Present: the index already held an event, stored by another call;
	// [AppendResult.Equal] says whether it equals this one.
	Present
)

func (o Outcome) String() string {
	switch o {
	case Written:
		return "written"
	case Present:
		return "present"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// AppendResult is the answer of [Log.ExistsOrWrite].
type AppendResult struct {
	Position
	Outcome Outcome
	// Equal reports whether the event at the index has the same payload
	// and content type as the one asked for (always true when Written).
	Equal bool
}

// conflict codes: wrong last sequence (10071), its replicated variant with
// no number (10164), and the same message id in process (10158). None of
// them proves the append did not happen.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeWrongLastSequence, errCodeLastSeqInFlight, errCodeInProcessSameMsgID:
			return true
		}
	}
	return false
}

// isDefinite reports a reply from JetStream that says the message was not
// stored (bad message, limits), as opposed to no reply at all.
func isDefinite(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && !isConflict(err)
}

func (l *Log) newMsg(ctx context.Context, esk string, payload []byte, opts []WriteOption) (*nats.Msg, error) {
	if err := ValidateESK(esk); err != nil {
		return nil, err
	}
	if l.cfg.copyOf != "" {
		return nil, fmt.Errorf("%w: ESK %q belongs to site %s, and %s holds a copy of its log: write at %s (Log.Owner)", ErrNotOwner, esk, l.cfg.copyOf, l.cfg.copyAt, l.cfg.copyOf)
	}
	if len(payload) > l.cfg.MaxPayload {
		return nil, fmt.Errorf("%w: event for ESK %q is %d bytes, the limit is %d", ErrPayloadTooLarge, esk, len(payload), l.cfg.MaxPayload)
	}
	w := writeConfig{hlc: l.cfg.StampHLC}
	for _, o := range opts {
		o(&w)
	}
	if w.hlc {
		w.set(HeaderHLC, l.cfg.Clock.Now().String())
	}
	if trace.SpanContextFromContext(ctx).IsValid() || baggage.FromContext(ctx).Len() > 0 {
		if w.header == nil {
			w.header = nats.Header{}
		}
		l.cfg.Propagator.Inject(ctx, propagation.HeaderCarrier(w.header))
	}
	m := &nats.Msg{Subject: l.Subject(esk), Data: payload, Header: w.header}
	if max := l.nc.MaxPayload(); max > 0 && int64(len(payload)+headerSize(m.Header)) > max {
		return nil, fmt.Errorf("%w: event for ESK %q with headers exceeds the server's max_payload of %d bytes", ErrPayloadTooLarge, esk, max)
	}
	return m, nil
}

func headerSize(h nats.Header) int {
	n := 12
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func (l *Log) startSpan(ctx context.Context, name, esk string) (context.Context, trace.Span) {
	ctx, span := l.cfg.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", l.Subject(esk)),
			attribute.String("detbus.esk", esk))
	}
	return ctx, span
}

func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(attrs...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Write appends an event to esk unconditionally and returns where it
// landed. It is one JetStream publish and, to learn the index, one
// headerless read when this Log knows the ESK's tail and nothing came
// between (a lone writer's case); otherwise a round of reads against the
// leader's tail (see the package documentation). Use [Log.Publish] when
// the stream position is enough, and [Log.WriteAsync] or
// [Log.PublishAsync] to pipeline writes.
//
// Errors: [ErrInvalidESK], [ErrPayloadTooLarge] (nothing written);
// [ErrUnavailable] when no acknowledgement came, in which case the event may
// have been stored.
func (l *Log) Write(ctx context.Context, esk string, payload []byte, opts ...WriteOption) (pos Position, err error) {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	ctx, span := l.startSpan(ctx, "detbus.write", esk)
	defer func() {
		endSpan(span, err, attribute.Int64("detbus.index", int64(pos.Index)), attribute.Int64("detbus.seq", int64(pos.Seq)))
	}()
	pos, err = l.publish(ctx, esk, payload, opts)
	if err != nil {
		return pos, err
	}
	idx, err := l.indexOf(ctx, l.esk(esk), pos.Seq)
	if err != nil {
		return pos, fmt.Errorf("transport: event stored at sequence %d but its index is unknown: %w", pos.Seq, err)
	}
	pos.Index = idx
	return pos, nil
}

// Publish appends an event to esk unconditionally and returns its stream
// position (Position.Seq; Index is left 0), without learning its index:
// one JetStream publish. [Log.IndexOf] finds the index later when it is
// needed. Use it where the total order is what matters (a fold waiting
// for its own write, a source that does not care about indices); use
// [Log.Write] to get the index at once.
//
// Errors: as [Log.Write].
func (l *Log) Publish(ctx context.Context, esk string, payload []byte, opts ...WriteOption) (pos Position, err error) {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	ctx, span := l.startSpan(ctx, "detbus.write", esk)
	defer func() { endSpan(span, err, attribute.Int64("detbus.seq", int64(pos.Seq))) }()
	return l.publish(ctx, esk, payload, opts)
}

func (l *Log) publish(ctx context.Context, esk string, payload []byte, opts []WriteOption) (Position, error) {
	m, err := l.newMsg(ctx, esk, payload, opts)
	if err != nil {
		return Position{}, err
	}
	gctx, release := l.denied.guard(ctx, esk, m.Subject)
	defer release()
	ack, err := l.js.PublishMsg(gctx, m)
	if err != nil {
		if ferr := forbidden(gctx); ferr != nil {
			return Position{}, ferr
		}
		return Position{}, l.publishErr(esk, err)
	}
	return Position{ESK: esk, Seq: ack.Sequence}, nil
}

// IndexOf returns the index of the event of esk stored at stream sequence
// seq, such as [Log.Publish] returns: from what this Log knows, or with a
// bounded number of reads whatever the ESK's length.
//
// Errors: [ErrInvalidESK]; an error naming the sequence when no event of
// esk is stored there; [ErrUnavailable].
func (l *Log) IndexOf(ctx context.Context, esk string, seq uint64) (uint64, error) {
	if err := ValidateESK(esk); err != nil {
		return 0, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	return l.indexOf(ctx, l.esk(esk), seq)
}

func (l *Log) publishErr(esk string, err error) error {
	if isDefinite(err) {
		return fmt.Errorf("transport: JetStream refused the event for ESK %q (nothing written): %w", esk, err)
	}
	return fmt.Errorf("%w: no acknowledgement for ESK %q, the event may have been stored: %v", ErrUnavailable, esk, err)
}

// ExistsOrWrite appends the event at index of esk only if index equals the
// ESK's count. It returns Written when this call stored it, Present when
// the index already held an event (with Equal telling whether that event
// has the same content), or an error: [*IndexAheadError] when index is
// past the count, [ErrInvalidESK] or [ErrPayloadTooLarge] for bad input,
// [ErrUnavailable] when NATS did not answer in time.
//
// A conflict reply from NATS is not taken as proof that the append did not
// happen: every conflict, timeout or lost reply is resolved by reading the
// index back, and the call's own identity (a header) tells "written by this
// call" from "written by another". Retrying the same conditional publish is
// safe, since at most one publish can match the expected last sequence.
// Concurrent calls for the same ESK and index, in this process or others,
// see exactly one Written.
func (l *Log) ExistsOrWrite(ctx context.Context, esk string, index uint64, payload []byte, opts ...WriteOption) (res AppendResult, err error) {
	ctx, span := l.startSpan(ctx, "detbus.exists_or_write", esk)
	defer func() {
		endSpan(span, err, attribute.Int64("detbus.index", int64(index)), attribute.String("detbus.outcome", res.Outcome.String()))
	}()
	m, err := l.newMsg(ctx, esk, payload, opts)
	if err != nil {
		return AppendResult{}, err
	}
	writeID := nuid.Next()
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderWriteID, writeID)
	want := Event{Header: m.Header, Data: payload}
	// The call's deadline. A context carrying it is made only when the
	// first attempt does not settle the outcome.
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		deadline = time.Now().Add(l.cfg.Timeout)
	}
	var slow context.Context
	var cancelSlow context.CancelFunc = func() {}
	defer func() { cancelSlow() }()
	slowCtx := func() context.Context {
		switch {
		case hasDeadline:
			return ctx
		case slow == nil:
			slow, cancelSlow = context.WithDeadline(ctx, deadline)
		}
		return slow
	}
	e := l.esk(esk)
	var lastErr error
	refresh := false // ask the leader for the tail before the next attempt
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 100*time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return AppendResult{}, fmt.Errorf("%w: conditional append to %q at %d, outcome unknown at the deadline: %v", ErrUnavailable, esk, index, lastErr)
		}
		var expect uint64 // the sequence of index-1, 0 for index 0
		t, known := e.tail()
		switch {
		case known && index <= t.index:
			return l.readBack(slowCtx(), e, esk, index, writeID, want)
		case known && index == t.index+1 && !refresh:
			expect = t.seq
		default:
			rctx := slowCtx()
			n, last, err := l.leaderTail(rctx, e)
			if err != nil {
				lastErr = err
				_ = sleepCtx(rctx, backoff)
				continue
			}
			refresh = false
			switch {
			case index < n:
				return l.readBack(rctx, e, esk, index, writeID, want)
			case index > n:
				return AppendResult{}, &IndexAheadError{ESK: esk, Index: index, Count: n}
			case n > 0:
				expect = last.Seq
			}
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
		// One attempt gets at most half the time left, so that a lost reply
		// leaves time to read back and retry.
		actx, acancel := context.WithDeadline(ctx, time.Now().Add(min(2*time.Second, max(time.Until(deadline)/2, time.Millisecond))))
		actx, release := l.denied.guard(actx, esk, m.Subject)
		ack, err := l.js.PublishMsg(actx, m)
		ferr := forbidden(actx)
		release()
		acancel()
		if ferr != nil {
			return AppendResult{}, ferr
		}
		if err == nil {
			if expect == 0 {
				e.add(fact{0, ack.Sequence})
			} else {
				e.advance(fact{index - 1, expect}, fact{index, ack.Sequence})
			}
			return AppendResult{Position: Position{ESK: esk, Index: index, Seq: ack.Sequence}, Outcome: Written, Equal: true}, nil
		}
		if isDefinite(err) {
			return AppendResult{}, fmt.Errorf("transport: JetStream refused the event for %q at %d (nothing written): %w", esk, index, err)
		}
		// A conflict, a timeout or no reply: learn what is there now.
		lastErr, refresh = err, true
		if !isConflict(err) {
			_ = sleepCtx(slowCtx(), backoff)
		}
	}
}

func (l *Log) readBack(ctx context.Context, e *eskFacts, esk string, index uint64, writeID string, want Event) (AppendResult, error) {
	loc, found, err := l.seqOf(ctx, e, index)
	if err == nil && !found {
		err = fmt.Errorf("the leader counts %d events", loc.count)
	}
	if err != nil {
		return AppendResult{}, fmt.Errorf("transport: read back %q at %d: %w", esk, index, err)
	}
	sm := loc.msg
	if sm == nil {
		m, err := l.gets.bySeq(ctx, loc.seq)
		if err != nil {
			return AppendResult{}, fmt.Errorf("transport: read back %q at %d: %w", esk, index, err)
		}
		sm = &m
	}
	got := Event{Header: sm.Header, Data: sm.Data}
	res := AppendResult{Position: Position{ESK: esk, Index: index, Seq: sm.Seq}, Outcome: Present, Equal: sameContent(got, want)}
	if sm.Header.Get(HeaderWriteID) == writeID {
		res.Outcome, res.Equal = Written, true
	}
	return res, nil
}
