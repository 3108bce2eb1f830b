package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/detbus/detbus/hlc"
)

// MVRegOp writes a multi-value register.
type MVRegOp struct {
	// Dot is the identity of the event that carries the op, and of the value
	// it writes.
	Dot Dot
	// TS is the event's hybrid logical clock time. The register does not use
	// it.
	TS hlc.Timestamp
	// Value is the JSON value written. It must be valid UTF-8 JSON and is
	// stored compacted as encoding/json writes it.
	Value json.RawMessage
	// Context is the op's causal context: the Dots of the values the writer
	// had seen (what [MVReg.Context] returned there). The write replaces
	// exactly those values; values it had not seen stay beside it.
	Context []Dot
}

// MVValue is one of the concurrent values of an [MVReg].
type MVValue struct {
	Dot   Dot
	Value json.RawMessage
}

// MVReg is a multi-value register: it keeps every value that no applied write
// has replaced, so concurrent writes are all kept until a write that saw
// them replaces them.
//
// Replaced Dots are kept as tombstones, so that a write delivered after the
// write that replaced it stays replaced; the state grows with every write.
// The zero MVReg is empty, ready to use.
type MVReg struct {
	values   map[Dot]json.RawMessage // canonical, never mutated
	replaced dotSet
}

// Apply applies op: every value whose Dot is in op.Context is replaced, and
// op's value is added unless its Dot was itself already replaced.
// Re-applying an op changes nothing. An invalid op (zero Dot, a zero context
// Dot, a value that is not valid JSON) is rejected with an error wrapping
// [ErrInvalidOp].
func (r *MVReg) Apply(op MVRegOp) error {
	if err := op.Dot.validate(); err != nil {
		return invalidOp("MVReg", "%v", err)
	}
	if err := validateDots(op.Context, "context"); err != nil {
		return invalidOp("MVReg", "op %s: %v", op.Dot, err)
	}
	v, err := canonicalValue(op.Value)
	if err != nil {
		return invalidOp("MVReg", "op %s: %v", op.Dot, err)
	}
	for _, d := range op.Context {
		r.replace(d)
	}
	r.put(op.Dot, v)
	return nil
}

func (r *MVReg) replace(d Dot) {
	if r.replaced == nil {
		r.replaced = dotSet{}
	}
	r.replaced[d] = struct{}{}
	delete(r.values, d)
}

// put adds v under d unless d was replaced. Should a Dot be reused with
// another value, the byte-wise greater value is kept, so that the result
// does not depend on arrival order. v must not be shared with other state.
func (r *MVReg) put(d Dot, v json.RawMessage) {
	if r.replaced.has(d) {
		return
	}
	if r.values == nil {
		r.values = map[Dot]json.RawMessage{}
	}
	if old, ok := r.values[d]; !ok || bytes.Compare(v, old) > 0 {
		r.values[d] = v
	}
}

// Merge merges other into r: the union of both sides' values and
// tombstones, minus the tombstoned values. other is not modified and shares
// no memory with r afterwards.
func (r *MVReg) Merge(other *MVReg) {
	if other == nil {
		return
	}
	for d := range other.replaced {
		r.replace(d)
	}
	for d, v := range other.values {
		r.put(d, bytes.Clone(v))
	}
}

// Value returns copies of the current values sorted by Dot, never nil.
func (r *MVReg) Value() []MVValue {
	out := []MVValue{}
	if r == nil {
		return out
	}
	for _, d := range dotSetOf(r.values).sorted() {
		out = append(out, MVValue{Dot: d, Value: bytes.Clone(r.values[d])})
	}
	return out
}

// Len returns the number of current values.
func (r *MVReg) Len() int {
	if r == nil {
		return 0
	}
	return len(r.values)
}

// Context returns the Dots of the current values, sorted: the Context of a
// write issued against this replica.
func (r *MVReg) Context() []Dot {
	if r == nil {
		return []Dot{}
	}
	return dotSetOf(r.values).sorted()
}

func dotSetOf[V any](m map[Dot]V) dotSet {
	s := make(dotSet, len(m))
	for d := range m {
		s[d] = struct{}{}
	}
	return s
}

// Equal reports whether r and other hold the same state, tombstones
// included. A nil register equals an empty one.
func (r *MVReg) Equal(other *MVReg) bool {
	var a, b MVReg
	if r != nil {
		a = *r
	}
	if other != nil {
		b = *other
	}
	if len(a.values) != len(b.values) || !a.replaced.equal(b.replaced) {
		return false
	}
	for d, v := range a.values {
		if ov, ok := b.values[d]; !ok || !bytes.Equal(v, ov) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of r.
func (r *MVReg) Clone() *MVReg {
	c := &MVReg{}
	c.Merge(r)
	return c
}

type mvRegWire struct {
	Values   []mvValueWire `json:"values"`
	Replaced []dotJSON     `json:"replaced"`
}

type mvValueWire struct {
	Dot   *dotJSON        `json:"dot"`
	Value json.RawMessage `json:"value"`
}

// MarshalJSON encodes the state as
// {"values":[{"dot":{...},"value":<json>},...],"replaced":[dots]}, both
// sorted by Dot.
func (r *MVReg) MarshalJSON() ([]byte, error) {
	w := mvRegWire{Values: []mvValueWire{}, Replaced: []dotJSON{}}
	if r != nil {
		for _, d := range dotSetOf(r.values).sorted() {
			dj := dotJSON(d)
			w.Values = append(w.Values, mvValueWire{Dot: &dj, Value: r.values[d]})
		}
		if len(r.replaced) > 0 {
			w.Replaced = r.replaced.sortedJSON()
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the form written by [MVReg.MarshalJSON], replacing
// r's state. Both lists must be strictly increasing by Dot, as written, and
// no value may carry a replaced Dot. Errors wrap [ErrMalformed].
func (r *MVReg) UnmarshalJSON(data []byte) error {
	var w mvRegWire
	if err := decodeStrict(data, &w); err != nil {
		return malformed("MVReg", err)
	}
	replaced, err := decodeDotList(w.Replaced, "replaced")
	if err != nil {
		return malformed("MVReg", err)
	}
	n := MVReg{replaced: replaced}
	for i, v := range w.Values {
		if v.Dot == nil || v.Value == nil {
			return malformed("MVReg", fmt.Errorf("values[%d]: needs both \"dot\" and \"value\"", i))
		}
		d := Dot(*v.Dot)
		if i > 0 && Dot(*w.Values[i-1].Dot).Compare(d) >= 0 {
			return malformed("MVReg", fmt.Errorf("values[%d]: dot %s not after %s (must be strictly increasing)", i, d, Dot(*w.Values[i-1].Dot)))
		}
		if replaced.has(d) {
			return malformed("MVReg", fmt.Errorf("values[%d]: dot %s is also replaced", i, d))
		}
		cv, err := canonicalValue(v.Value)
		if err != nil {
			return malformed("MVReg", fmt.Errorf("values[%d]: %w", i, err))
		}
		n.put(d, cv)
	}
	*r = n
	return nil
}
