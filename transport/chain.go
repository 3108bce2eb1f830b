package transport

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Hash is a SHA-256 digest: an event's hash ([HashEvent]) or a link of a
// log's hash chain ([ChainLink]). Its text form is 64 lowercase hex
// digits.
type Hash [32]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash: the chain before the log's
// first event.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes the hash in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hash from hex.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash decodes a hash from its 64 hex digits. The error wraps
// [ErrInvalidOption].
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("%w: hash %q is not %d hex digits", ErrInvalidOption, s, 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: hash %q: %v", ErrInvalidOption, s, err)
	}
	return h, nil
}

// Domain separators of the two hashes, so that an event hash can never
// be taken for a chain link or the reverse.
const (
	eventDomain = "detbus event v1\x00"
	linkDomain  = "detbus chain v1\x00"
)

// HashEvent is the hash of one stored event, version 1:
//
//	SHA-256( "detbus event v1" 0x00
//	         seq             uint64, big-endian
//	         stored time     int64 nanoseconds since 1970 UTC, big-endian
//	         len(subject)    uint32   subject
//	         n               uint32   the header fields that count
//	         n × ( len(key) uint32 key  len(value) uint32 value )
//	         len(payload)    uint64   payload )
//
// The subject is the full NATS subject ("events.orders.eu"), seq the
// stream sequence, stored the time the stream stored the event. The
// header fields that count are every field whose name does not start
// with "Nats-" (in any case): those are JetStream's own (message ids,
// expectations, batch and source markers) that a server may add or drop
// when it stores, mirrors or serves a message. Fields are taken with
// their names as stored (NATS headers are case-sensitive), sorted by
// name (bytewise), each name's values in stored order; a name with
// several values counts once per value.
//
// Everything hashed is what a JetStream mirror keeps: subject, sequence,
// stored time, headers and payload, so the hash of an event computed from
// its origin stream and from a mirror of it is the same. A copy made by
// republishing is a different log (new stored times, and sequences that
// shift wherever the origin has a gap).
func HashEvent(subject string, seq uint64, stored time.Time, h nats.Header, data []byte) Hash {
	var eh eventHasher
	return eh.event(subject, seq, stored, h, data)
}

// ChainLink is the chain hash after an event: SHA-256( "detbus chain v1"
// 0x00 ‖ prev ‖ event ), where prev is the chain hash after the previous
// event of the stream (the zero Hash before the first) and event is the
// event's [HashEvent]. The chain runs over every message of the stream in
// sequence order, whatever its subject; a stream's chain at position S is
// the link after the last message at or before S.
func ChainLink(prev, event Hash) Hash {
	var eh eventHasher
	return eh.link(prev, event)
}

// EventHash is the [HashEvent] of an event read from this log.
func (l *Log) EventHash(ev Event) Hash {
	var eh eventHasher
	return eh.event(l.Subject(ev.ESK), ev.Seq, ev.Stored, ev.Header, ev.Data)
}

// eventHasher computes event hashes and links reusing one SHA-256 state
// and buffer. It is not safe for concurrent use.
type eventHasher struct {
	h    hash.Hash
	buf  []byte
	keys []string
	sum  []byte
}

func (eh *eventHasher) reset() {
	if eh.h == nil {
		eh.h = sha256.New()
	}
	eh.h.Reset()
}

func (eh *eventHasher) event(subject string, seq uint64, stored time.Time, h nats.Header, data []byte) Hash {
	eh.reset()
	b := append(eh.buf[:0], eventDomain...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(stored.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(subject)))
	b = append(b, subject...)
	eh.keys = eh.keys[:0]
	n := 0
	for k, vs := range h {
		if counts(k) {
			eh.keys = append(eh.keys, k)
			n += len(vs)
		}
	}
	slices.Sort(eh.keys)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, k := range eh.keys {
		for _, v := range h[k] {
			b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	eh.h.Write(b)
	eh.h.Write(data)
	eh.buf = b
	return eh.digest()
}

func (eh *eventHasher) link(prev, ev Hash) Hash {
	eh.reset()
	b := append(eh.buf[:0], linkDomain...)
	b = append(b, prev[:]...)
	b = append(b, ev[:]...)
	eh.h.Write(b)
	eh.buf = b
	return eh.digest()
}

func (eh *eventHasher) digest() Hash {
	eh.sum = eh.h.Sum(eh.sum[:0])
	return Hash(eh.sum)
}

// counts reports whether a header field is part of an event's hash: all
// but JetStream's own "Nats-" fields.
func counts(key string) bool {
	return len(key) < 5 || !strings.EqualFold(key[:5], "Nats-")
}

// ChainPoint is a log's chain at a stream position: the chain hash over
// every message at or before Seq. The zero value is the chain before the
// first event.
type ChainPoint struct {
	Seq  uint64 `json:"seq"`
	Hash Hash   `json:"hash"`
}

// Chain extends the chain of the log's stream from point from to position
// to (0: the stream's last sequence as its leader reports it now), reading
// the messages after from.Seq with batched direct gets, and returns the
// chain at to. From the zero ChainPoint it computes the chain from the
// first event. The log's stream may be its own or a copy (a JetStream
// mirror, [Log.Copy]): both give the same chain.
//
// Errors: [ErrInvalidOption] when to is before from.Seq,
// [ErrUnavailable] when NATS does not answer.
func (l *Log) Chain(ctx context.Context, from ChainPoint, to uint64) (ChainPoint, error) {
	if to == 0 {
		head, err := l.head(ctx)
		if err != nil {
			return ChainPoint{}, err
		}
		to = max(head, from.Seq)
	}
	if to < from.Seq {
		return ChainPoint{}, fmt.Errorf("%w: chain to position %d from position %d: the chain only extends forward", ErrInvalidOption, to, from.Seq)
	}
	var eh eventHasher
	cur := from
	err := l.scan(ctx, from.Seq+1, to, func(m *storedMsg) error {
		cur = ChainPoint{Seq: m.Seq, Hash: eh.link(cur.Hash, eh.event(m.Subject, m.Seq, m.Time, m.Header, m.Data))}
		return nil
	})
	cur.Seq = to
	return cur, err
}

// head is the stream's last sequence, as its leader reports it.
func (l *Log) head(ctx context.Context) (uint64, error) {
	info, err := l.info(ctx, "")
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// scan calls fn with every message of the log's stream from sequence
// from to sequence to, in order, read with batched direct gets. The next
// batch is asked for as soon as a batch arrives, so that fn works on one
// while the next is on its way. A server that answers with nothing
// before to is behind (a lagging replica) unless the stream's leader
// holds nothing more up to to either (the rest deleted, in a stream that
// allows it).
func (l *Log) scan(ctx context.Context, from, to uint64, fn func(*storedMsg) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type batch struct {
		rep directReply
		err error
	}
	fetch := func(next uint64) chan batch {
		ch := make(chan batch, 1)
		go func() {
			rctx, cancel := l.withTimeout(ctx)
			defer cancel()
			rep, err := l.directOwn(rctx, l.cfg.Stream, directGetRequest{Seq: next, Batch: walkBatch, MaxBytes: walkMaxBytes})
			ch <- batch{rep, err}
		}()
		return ch
	}
	backoff := time.Millisecond
	next := max(from, 1)
	if next > to {
		return nil
	}
	pending := fetch(next)
	for next <= to {
		b := <-pending
		pending = nil
		if b.err != nil {
			return fmt.Errorf("read %s from %d: %w", l.cfg.Stream, next, b.err)
		}
		msgs := b.rep.msgs
		if n := len(msgs); n > 0 && msgs[n-1].Seq < to {
			pending = fetch(msgs[n-1].Seq + 1)
		}
		got := false
		for i := range msgs {
			m := &msgs[i]
			if m.Seq < next {
				continue
			}
			if m.Seq > to {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			next, got = m.Seq+1, true
		}
		if got {
			backoff = time.Millisecond
			if pending == nil && next <= to {
				pending = fetch(next)
			}
			continue
		}
		more, err := l.leaderHasFrom(ctx, l.cfg.Stream, next, to)
		if err != nil || !more {
			return err
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return fmt.Errorf("%w: read %s from %d: no replica serves it: %v", ErrUnavailable, l.cfg.Stream, next, err)
		}
		backoff = min(2*backoff, 50*time.Millisecond)
		if pending == nil {
			pending = fetch(next)
		}
	}
	return nil
}

// directOwn is a direct get on stream answered by the stream itself. A
// JetStream mirror of a stream that allows direct gets answers that
// stream's direct gets too (it inherits "mirror direct" from its origin,
// in the same queue group), so a reply from another stream is asked
// again: what a verification reads must come from the stream it checks.
// Replies with no message (not found) cannot be told apart, and are
// taken as they come.
func (l *Log) directOwn(ctx context.Context, stream string, req directGetRequest) (directReply, error) {
	for i := 0; ; i++ {
		rep, err := l.directOn(ctx, stream, req)
		if err != nil || len(rep.msgs) == 0 || rep.msgs[0].Stream == "" || rep.msgs[0].Stream == stream {
			return rep, err
		}
		if i == maxMirrorAnswers {
			return directReply{}, fmt.Errorf("%w: direct gets on %s: only %s, a copy of it, answers", ErrUnavailable, stream, rep.msgs[0].Stream)
		}
	}
}

// maxMirrorAnswers bounds how many replies from mirrors a direct get
// takes before it gives up on the stream itself.
const maxMirrorAnswers = 200

// leaderHasFrom reports whether the leader of stream holds a message at
// a sequence in [from, to].
func (l *Log) leaderHasFrom(ctx context.Context, stream string, from, to uint64) (bool, error) {
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	req, _ := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, ">"})
	msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return false, fmt.Errorf("%w: message at or after %d in %s: %v", ErrUnavailable, from, stream, err)
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return false, fmt.Errorf("%w: message at or after %d in %s: %v", ErrUnavailable, from, stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return false, nil
	case resp.Error != nil:
		return false, fmt.Errorf("%w: message at or after %d in %s: %s", ErrUnavailable, from, stream, resp.Error.Description)
	case resp.Message == nil:
		return false, errors.New("transport: empty message get reply")
	}
	return resp.Message.Seq <= to, nil
}

// getOwn reads the message at seq of stream from the stream itself. It
// reports false when the stream's leader holds none there.
func (l *Log) getOwn(ctx context.Context, stream string, seq uint64) (storedMsg, bool, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		rep, err := l.directOwn(ctx, stream, directGetRequest{Seq: seq})
		if err != nil {
			return storedMsg{}, false, err
		}
		if len(rep.msgs) > 0 && rep.msgs[0].Seq == seq {
			return rep.msgs[0], true, nil
		}
		// Not found where the request went: a replica or a copy behind,
		// unless the leader has nothing there either.
		if has, err := l.leaderHasFrom(ctx, stream, seq, seq); err != nil || !has {
			return storedMsg{}, false, err
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return storedMsg{}, false, fmt.Errorf("%w: message %d of %s not served: %v", ErrUnavailable, seq, stream, err)
		}
	}
}
