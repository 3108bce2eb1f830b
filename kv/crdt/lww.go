package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/detbus/detbus/hlc"
)

// LWWOp writes a last-writer-wins register: it sets the register to Value,
// or, with Delete, replaces its value by a tombstone.
type LWWOp struct {
	// Dot is the identity of the event that carries the op.
	Dot Dot
	// TS is the event's hybrid logical clock time. It must have a
	// non-negative wall time.
	TS hlc.Timestamp
	// Delete makes the op a tombstone; Value is then ignored.
	Delete bool
	// Value is the JSON value a set writes. It must be valid UTF-8 JSON and
	// is stored compacted as encoding/json writes it (see the package
	// documentation).
	Value json.RawMessage
}

// LWW is a last-writer-wins register holding a JSON value. Of all the ops
// applied or merged into it, the one with the greatest (TS, Dot) wins (see
// the package documentation for the tie-break rule); a winning delete leaves
// a tombstone, which reports no value.
//
// The zero LWW is an empty register, ready to use.
type LWW struct {
	set bool // whether any op has been applied
	w   lwwCell
}

// lwwCell is one write: a set or a tombstone, with its identity.
type lwwCell struct {
	ts      hlc.Timestamp
	dot     Dot
	deleted bool
	value   json.RawMessage // canonical, nil for a tombstone; never mutated
}

// compare orders writes by (timestamp, dot). Two different writes with the
// same identity can only come from a reused Dot; they are still ordered
// deterministically, tombstone first and then by value bytes, so that merging
// stays commutative.
func (a lwwCell) compare(b lwwCell) int {
	if c := a.ts.Compare(b.ts); c != 0 {
		return c
	}
	if c := a.dot.Compare(b.dot); c != 0 {
		return c
	}
	if a.deleted != b.deleted {
		if a.deleted {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.value, b.value)
}

// Apply applies op. Applying an op the register has already seen, or one that
// loses to the current winner, changes nothing. An invalid op (zero Dot,
// negative wall time, a set whose value is not valid JSON) is rejected with an
// error wrapping [ErrInvalidOp].
func (r *LWW) Apply(op LWWOp) error {
	if err := op.Dot.validate(); err != nil {
		return invalidOp("LWW", "%v", err)
	}
	if err := checkTimestamp(op.TS); err != nil {
		return invalidOp("LWW", "%v", err)
	}
	c := lwwCell{ts: op.TS, dot: op.Dot, deleted: op.Delete}
	if !op.Delete {
		v, err := canonicalValue(op.Value)
		if err != nil {
			return invalidOp("LWW", "op %s: %v", op.Dot, err)
		}
		c.value = v
	}
	r.offer(c)
	return nil
}

// offer makes c the winner if it beats the current one. c.value must not be
// shared with any other state.
func (r *LWW) offer(c lwwCell) {
	if !r.set || c.compare(r.w) > 0 {
		r.set, r.w = true, c
	}
}

// Merge merges other into r: the greater of the two winners wins. other is
// not modified and shares no memory with r afterwards.
func (r *LWW) Merge(other *LWW) {
	if other == nil || !other.set {
		return
	}
	if !r.set || other.w.compare(r.w) > 0 {
		c := other.w
		c.value = bytes.Clone(c.value)
		r.set, r.w = true, c
	}
}

// Value returns a copy of the current value, or nil and false when the
// register is empty or holds a tombstone.
func (r *LWW) Value() (json.RawMessage, bool) {
	if r == nil || !r.set || r.w.deleted {
		return nil, false
	}
	return bytes.Clone(r.w.value), true
}

// Winner returns the identity of the winning op, a tombstone included, and
// false when the register is empty.
func (r *LWW) Winner() (hlc.Timestamp, Dot, bool) {
	if r == nil || !r.set {
		return hlc.Timestamp{}, Dot{}, false
	}
	return r.w.ts, r.w.dot, true
}

// Deleted reports whether the winning op is a delete.
func (r *LWW) Deleted() bool { return r != nil && r.set && r.w.deleted }

// Equal reports whether r and other hold the same state. A nil register
// equals an empty one.
func (r *LWW) Equal(other *LWW) bool {
	rs, os := r != nil && r.set, other != nil && other.set
	if rs != os {
		return false
	}
	return !rs || r.w.compare(other.w) == 0
}

// Clone returns a deep copy of r.
func (r *LWW) Clone() *LWW {
	c := &LWW{}
	c.Merge(r)
	return c
}

type lwwWire struct {
	TS      *hlc.Timestamp  `json:"ts,omitempty"`
	Dot     *dotJSON        `json:"dot,omitempty"`
	Deleted bool            `json:"deleted,omitempty"`
	Value   json.RawMessage `json:"value,omitempty"`
}

// MarshalJSON encodes the state: {} when empty,
// {"ts":"<hlc>","dot":{...},"value":<json>} for a set and
// {"ts":"<hlc>","dot":{...},"deleted":true} for a tombstone.
func (r *LWW) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.wire())
}

func (r *LWW) wire() lwwWire {
	if r == nil || !r.set {
		return lwwWire{}
	}
	ts, dot := r.w.ts, dotJSON(r.w.dot)
	return lwwWire{TS: &ts, Dot: &dot, Deleted: r.w.deleted, Value: r.w.value}
}

// UnmarshalJSON decodes the form written by [LWW.MarshalJSON], replacing r's
// state. Errors wrap [ErrMalformed].
func (r *LWW) UnmarshalJSON(data []byte) error {
	var w lwwWire
	if err := decodeStrict(data, &w); err != nil {
		return malformed("LWW", err)
	}
	n, err := w.state()
	if err != nil {
		return malformed("LWW", err)
	}
	*r = n
	return nil
}

func (w lwwWire) state() (LWW, error) {
	if w.TS == nil && w.Dot == nil && !w.Deleted && w.Value == nil {
		return LWW{}, nil
	}
	if w.TS == nil || w.Dot == nil {
		return LWW{}, errors.New("a non-empty register needs both \"ts\" and \"dot\"")
	}
	if err := checkTimestamp(*w.TS); err != nil {
		return LWW{}, err
	}
	c := lwwCell{ts: *w.TS, dot: Dot(*w.Dot), deleted: w.Deleted}
	switch {
	case w.Deleted && w.Value != nil:
		return LWW{}, errors.New("a tombstone has no \"value\"")
	case !w.Deleted && w.Value == nil:
		return LWW{}, errors.New("a set needs a \"value\" (or \"deleted\":true)")
	case !w.Deleted:
		v, err := canonicalValue(w.Value)
		if err != nil {
			return LWW{}, fmt.Errorf("value: %w", err)
		}
		c.value = v
	}
	return LWW{set: true, w: c}, nil
}
