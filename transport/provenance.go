package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers naming the input an event was made from: a DET sets them on
// its outputs and rejections (see [InputRef]).
const (
	HeaderInput     = "Detbus-Input"      // the input's identity: [InputRef.String]
	HeaderInputHash = "Detbus-Input-Hash" // the input's [HashEvent], in hex
)

// ErrBrokenLink is wrapped by the error of [Log.Trace] when an event's
// input is missing or does not match the hash the event names; the
// concrete error is a [*BrokenLinkError].
var ErrBrokenLink = errors.New("transport: broken input link")

// InputRef names the event an output was made from: its origin stream
// ([Log.ChainOrigin], so that a site's copy of that stream can be found
// anywhere: a mirror keeps the origin's sequences), its ESK, index and
// stream sequence, and its [HashEvent].
type InputRef struct {
	Stream string `json:"stream"`
	ESK    string `json:"esk"`
	Index  uint64 `json:"index"`
	Seq    uint64 `json:"seq"`
	Hash   Hash   `json:"hash"`
}

// String is the Detbus-Input header's value, "<stream>:<esk>:<index>@<seq>"
// (for example "EVENTS:bank.commands.alice:3@17").
func (r InputRef) String() string {
	return r.Stream + ":" + r.ESK + ":" + strconv.FormatUint(r.Index, 10) + "@" + strconv.FormatUint(r.Seq, 10)
}

// ParseInputRef parses a Detbus-Input value (the Hash stays zero). The
// stream is everything before the first ':', the sequence follows the
// last '@' and the index the last ':' before it, so an ESK may hold ':'
// and '@'. The error wraps [ErrMalformed].
func ParseInputRef(s string) (InputRef, error) {
	bad := func(why string) (InputRef, error) {
		return InputRef{}, fmt.Errorf("%w: input %q: %s (want <stream>:<esk>:<index>@<seq>)", ErrMalformed, s, why)
	}
	rest, seqStr, ok := cutLast(s, "@")
	if !ok {
		return bad("no '@'")
	}
	stream, rest, ok := strings.Cut(rest, ":")
	if !ok || stream == "" {
		return bad("no stream")
	}
	esk, indexStr, ok := cutLast(rest, ":")
	if !ok {
		return bad("no index")
	}
	if err := ValidateESK(esk); err != nil {
		return bad(err.Error())
	}
	index, err1 := strconv.ParseUint(indexStr, 10, 64)
	seq, err2 := strconv.ParseUint(seqStr, 10, 64)
	if err1 != nil || err2 != nil || seq == 0 {
		return bad("index and sequence must be numbers, the sequence from 1")
	}
	return InputRef{Stream: stream, ESK: esk, Index: index, Seq: seq}, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// InputRef is the identity and hash of an event read from this log, for
// the outputs made from it.
func (l *Log) InputRef(ev Event) InputRef {
	return InputRef{Stream: l.ChainOrigin(), ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Hash: l.EventHash(ev)}
}

// InputOf reads the input an event names in its headers. It reports
// false when the event names none (a source's event); the error wraps
// [ErrMalformed] when the headers are there but unreadable.
func InputOf(h nats.Header) (InputRef, bool, error) {
	v := h.Get(HeaderInput)
	if v == "" {
		return InputRef{}, false, nil
	}
	r, err := ParseInputRef(v)
	if err != nil {
		return InputRef{}, true, err
	}
	if r.Hash, err = ParseHash(h.Get(HeaderInputHash)); err != nil {
		return InputRef{}, true, fmt.Errorf("%w: %s of input %s: %v", ErrMalformed, HeaderInputHash, v, err)
	}
	return r, true, nil
}

// WithInput names the event's input in its headers ([HeaderInput],
// [HeaderInputHash]).
func WithInput(r InputRef) WriteOption {
	return func(w *writeConfig) {
		w.set(HeaderInput, r.String())
		w.set(HeaderInputHash, r.Hash.String())
	}
}

func setInput(h nats.Header, r InputRef) {
	h.Set(HeaderInput, r.String())
	h.Set(HeaderInputHash, r.Hash.String())
}

// AppendRunFrom is [Log.AppendRun] for events made from inputs: event i
// names inputs[i] in its headers, as [WithInput] does. inputs holds one
// entry per payload ([ErrInvalidOption] otherwise).
func (l *Log) AppendRunFrom(ctx context.Context, esk string, index uint64, payloads [][]byte, inputs []InputRef, opts ...WriteOption) (RunResult, error) {
	if len(inputs) != len(payloads) {
		return RunResult{}, fmt.Errorf("%w: a run of %d events with %d inputs", ErrInvalidOption, len(payloads), len(inputs))
	}
	return l.appendRun(ctx, esk, index, payloads, inputs, opts)
}

// TraceStep is one event on the way from an output back to its source.
type TraceStep struct {
	Stream string    `json:"stream"` // the stream it was read from
	ESK    string    `json:"esk"`
	Index  uint64    `json:"index"`
	Seq    uint64    `json:"seq"`
	Hash   Hash      `json:"hash"`            // its HashEvent, as read
	Input  *InputRef `json:"input,omitempty"` // the input it names; nil for a source's event
}

// BrokenLinkError says which link of a trace does not hold.
type BrokenLinkError struct {
	From   TraceStep // the event naming the input
	Input  InputRef  // the input it names
	Reason string
}

func (e *BrokenLinkError) Error() string {
	return fmt.Sprintf("transport: broken link: %s#%d (seq %d) names input %s with hash %s: %s",
		e.From.ESK, e.From.Index, e.From.Seq, e.Input, e.Input.Hash, e.Reason)
}

// Unwrap makes errors.Is(err, ErrBrokenLink) true.
func (e *BrokenLinkError) Unwrap() error { return ErrBrokenLink }

// MaxTraceDepth bounds the links [Log.Trace] follows.
const MaxTraceDepth = 10_000

// Trace walks back from the event at (esk, index) to the source event it
// came from: it reads the input the event names ([HeaderInput]), checks
// the input's hash against [HeaderInputHash], and goes on from the input
// while it names one (a DET's output read by another DET). The path
// starts with the event asked for and ends with a source's event; each
// step but the last names the next as its input.
//
// An input is read by its sequence from its stream: the log's own when
// the input names it ([Log.ChainOrigin]), else a stream of that name on
// the connection, else a mirror of it (a site's copy). Its ESK and, in
// the log's own stream, its index are checked against the name too.
//
// Errors: a [*BrokenLinkError] (wrapping [ErrBrokenLink]) for an input
// that is missing, differs from its hash or its name, or names a later
// event of its own stream, with the path up to it; [ErrNotFound] when
// (esk, index) holds no event; [ErrUnavailable].
func (l *Log) Trace(ctx context.Context, esk string, index uint64) ([]TraceStep, error) {
	ev, err := l.Get(ctx, esk, index)
	if err != nil {
		return nil, err
	}
	t := tracer{l: l, streams: map[string]string{}}
	step := TraceStep{Stream: l.cfg.Stream, ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Hash: l.EventHash(ev)}
	h := ev.Header
	var path []TraceStep
	for len(path) < MaxTraceDepth {
		in, ok, err := InputOf(h)
		if err != nil {
			path = append(path, step)
			return path, &BrokenLinkError{From: step, Input: in, Reason: err.Error()}
		}
		if !ok {
			return append(path, step), nil
		}
		step.Input = &in
		path = append(path, step)
		next, hdr, reason, err := t.follow(ctx, step, in)
		if err != nil {
			return path, err
		}
		if reason != "" {
			return path, &BrokenLinkError{From: step, Input: in, Reason: reason}
		}
		step, h = next, hdr
	}
	return path, fmt.Errorf("%w: more than %d links from %s#%d", ErrBrokenLink, MaxTraceDepth, esk, index)
}

// tracer finds the streams a trace reads.
type tracer struct {
	l       *Log
	streams map[string]string // origin stream -> the stream holding it here ("" if none)
}

// follow reads the input in named by from and checks it. It returns the
// input's step and headers, or why the link is broken.
func (t *tracer) follow(ctx context.Context, from TraceStep, in InputRef) (TraceStep, nats.Header, string, error) {
	l := t.l
	stream, err := t.holder(ctx, in.Stream)
	if err != nil {
		return TraceStep{}, nil, "", err
	}
	if stream == "" {
		return TraceStep{}, nil, fmt.Sprintf("no stream here holds stream %s or a copy of it", in.Stream), nil
	}
	if stream == from.Stream && in.Seq >= from.Seq {
		return TraceStep{}, nil, "the input is not before the event in its stream", nil
	}
	m, found, err := l.getOwn(ctx, stream, in.Seq)
	if err != nil {
		return TraceStep{}, nil, "", err
	}
	if !found {
		return TraceStep{}, nil, fmt.Sprintf("stream %s holds no event at sequence %d", stream, in.Seq), nil
	}
	step := TraceStep{Stream: stream, ESK: in.ESK, Index: in.Index, Seq: m.Seq, Hash: HashEvent(m.Subject, m.Seq, m.Time, m.Header, m.Data)}
	if !strings.HasSuffix(m.Subject, "."+in.ESK) || (stream == l.cfg.Stream && m.Subject != l.Subject(in.ESK)) {
		return step, nil, fmt.Sprintf("the event at sequence %d of %s is on subject %s, not ESK %s", m.Seq, stream, m.Subject, in.ESK), nil
	}
	if step.Hash != in.Hash {
		return step, nil, fmt.Sprintf("the event at sequence %d of %s hashes to %s", m.Seq, stream, step.Hash), nil
	}
	if stream == l.cfg.Stream {
		index, err := l.IndexOf(ctx, in.ESK, in.Seq)
		if err != nil {
			return TraceStep{}, nil, "", err
		}
		if index != in.Index {
			return step, nil, fmt.Sprintf("the event at sequence %d is %s#%d", m.Seq, in.ESK, index), nil
		}
	}
	return step, m.Header, "", nil
}

// holder returns the stream here that holds origin's events: the log's
// own, this site's copy of it (at a site: read here, whatever the link to
// the origin), a stream named origin, or a mirror of it; "" if none.
func (t *tracer) holder(ctx context.Context, origin string) (string, error) {
	if s, ok := t.streams[origin]; ok {
		return s, nil
	}
	l := t.l
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	found := ""
	if origin == l.ChainOrigin() || origin == l.cfg.Stream {
		found = l.cfg.Stream
	} else if copy := l.siteCopyOf(ctx, origin); copy != "" {
		found = copy
	} else if _, err := l.js.Stream(ctx, origin); err == nil {
		found = origin
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return "", fmt.Errorf("%w: stream %s: %v", ErrUnavailable, origin, err)
	} else {
		list := l.js.ListStreams(ctx)
		for info := range list.Info() {
			if m := info.Config.Mirror; m != nil && m.Name == origin {
				found = info.Config.Name
			}
		}
		if err := list.Err(); err != nil {
			return "", fmt.Errorf("%w: list the streams for a copy of %s: %v", ErrUnavailable, origin, err)
		}
	}
	t.streams[origin] = found
	return found, nil
}

// siteCopyOf returns this site's copy of origin, when the log is a
// site's (or a copy held at a site) and origin another site's log whose
// copy exists here; "" otherwise.
func (l *Log) siteCopyOf(ctx context.Context, origin string) string {
	site := l.Site()
	if site == "" {
		return ""
	}
	base, _ := l.cfg.siteBase()
	if l.cfg.copyOf != "" {
		base = strings.TrimSuffix(l.cfg.Stream, "_"+l.cfg.copyOf+"_AT_"+site)
	}
	o, ok := strings.CutPrefix(origin, base+"_")
	if !ok || o == site || ValidateSiteName(o) != nil {
		return ""
	}
	name := CopyStream(base, o, site)
	if _, err := l.js.Stream(ctx, name); err != nil {
		return ""
	}
	return name
}
