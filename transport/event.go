package transport

import (
	"context"
	"net/textproto"
	"strings"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header names the SDK sets on the events it writes. Plain writes carry
// none unless asked; conditional appends carry HeaderWriteID. Every one is
// optional: events published by other tools carry none of them and are
// read the same way, with the stream's timestamp for time and JSON for
// content.
const (
	HeaderHLC         = hlc.Header        // HLC time of the write, with WithHLC
	HeaderContentType = "Content-Type"    // codec of the payload; absent means JSON
	HeaderWriteID     = "Detbus-Write-Id" // identity of one conditional append call
	HeaderTraceParent = "traceparent"     // W3C trace context
	HeaderTraceState  = "tracestate"      // W3C trace context
)

// Event is one event read from the log.
type Event struct {
	ESK    string        // event source key
	Index  uint64        // 0-based position among the events of ESK
	Seq    uint64        // stream sequence: the log's total order
	Time   hlc.Timestamp // HLC time from the header, else the stored time (see MaxEventSkew)
	Stored time.Time     // when the stream stored it
	// Clamped reports an HLC header further than MaxEventSkew from the
	// stored time: Time is then the stored time.
	Clamped bool
	Header  nats.Header // headers as published (nil when none)
	Data    []byte      // payload
}

// Position names where an event landed.
type Position struct {
	ESK   string
	Index uint64
	Seq   uint64
}

// ContentType is the payload's content type; "" when the event has no
// header, which means JSON.
func (e Event) ContentType() string { return e.Header.Get(HeaderContentType) }

// Decode decodes the payload into v with the codec of its content type.
// Errors wrap [ErrUnknownContentType], [ErrDecodeTarget],
// [ErrPayloadTooLarge] or [ErrMalformed].
func (e Event) Decode(v any) error {
	c, err := CodecFor(e.ContentType())
	if err != nil {
		return err
	}
	return c.Unmarshal(e.Data, v)
}

// Position returns the event's position.
func (e Event) Position() Position { return Position{ESK: e.ESK, Index: e.Index, Seq: e.Seq} }

// ContextWithTrace returns ctx carrying the W3C trace context the event was
// published with, if any, so that work caused by the event joins the
// writer's trace.
func (e Event) ContextWithTrace(ctx context.Context) context.Context {
	if e.Header == nil {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, HeaderCarrier(e.Header))
}

// HeaderCarrier lets OpenTelemetry propagators read an event's headers. It
// finds a field as written ("traceparent", as `nats pub -H` sends it),
// canonicalised ("Traceparent", as Go's header types write it) or in
// lower case, since NATS headers are case-sensitive and writers differ.
type HeaderCarrier nats.Header

// Get returns the first value of key, in any of the spellings above.
func (c HeaderCarrier) Get(key string) string {
	for _, k := range []string{key, textproto.CanonicalMIMEHeaderKey(key), strings.ToLower(key)} {
		if v := c[k]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Set sets key, canonicalised, to value.
func (c HeaderCarrier) Set(key, value string) {
	c[textproto.CanonicalMIMEHeaderKey(key)] = []string{value}
}

// Keys lists the keys as stored.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// SpanContext is the remote span context the event carries (invalid when
// none).
func (e Event) SpanContext() trace.SpanContext {
	return trace.SpanContextFromContext(e.ContextWithTrace(context.Background()))
}

func sameContent(a, b Event) bool {
	return normType(a.ContentType()) == normType(b.ContentType()) && string(a.Data) == string(b.Data)
}

func normType(ct string) string {
	if ct == "" {
		return "application/json"
	}
	return ct
}

// MaxEventSkew bounds how far an event's HLC time may lie from the time
// the stream stored it. Any publisher sets the HLC header, so a time far
// ahead would win every last-writer-wins comparison and outlast every
// lease for as long as it is ahead: a header further than this from the
// stored time is ignored, the event's time is the stored time, and the
// event is marked [Event.Clamped]. The stored time is the same on every
// replica, so every reader clamps the same events the same way; the bound
// is part of the log's contract, not a setting, for the same reason.
const MaxEventSkew = time.Minute

// toEvent builds an Event from a stored message; index is supplied by the
// caller.
func toEvent(esk string, index uint64, seq uint64, stored time.Time, h nats.Header, data []byte) Event {
	ev := Event{ESK: esk, Index: index, Seq: seq, Stored: stored, Header: h, Data: data}
	ev.Time = hlc.FromTime(stored)
	if v := h.Get(HeaderHLC); v != "" {
		if ts, err := hlc.Parse(v); err == nil {
			if d := ts.WallTime - stored.UnixNano(); d > int64(MaxEventSkew) || d < -int64(MaxEventSkew) {
				ev.Clamped = true
			} else {
				ev.Time = ts
			}
		}
	}
	return ev
}
