package crdt

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
)

// MapOpKind says what a [MapOp] does.
type MapOpKind uint8

const (
	// MapSet writes Value to the key's LWW register and makes the key
	// present.
	MapSet MapOpKind = iota + 1
	// MapAdd adds Delta to the key's counter on behalf of Writer and makes
	// the key present.
	MapAdd
	// MapRemove removes the key's presence tags listed in Observed.
	MapRemove
)

func (k MapOpKind) String() string {
	switch k {
	case MapSet:
		return "set"
	case MapAdd:
		return "add"
	case MapRemove:
		return "remove"
	}
	return fmt.Sprintf("MapOpKind(%d)", uint8(k))
}

// MapOp updates or removes one key of a [Map].
type MapOp struct {
	// Kind is what the op does.
	Kind MapOpKind
	// Key is the key updated or removed. It must be valid UTF-8.
	Key string
	// Dot is the identity of the event that carries the op. A set or an add
	// tags the key's presence with it and is applied to the nested value
	// with it; a remove does not use it.
	Dot Dot
	// TS is the event's hybrid logical clock time, used by a set as the
	// register write's time. It must have a non-negative wall time for a
	// set.
	TS hlc.Timestamp
	// Value is the JSON value a set writes (see [LWWOp.Value]).
	Value json.RawMessage
	// Writer and Delta are the counter update of an add (see [CounterOp]).
	Writer string
	Delta  int64
	// Observed, for a remove, lists the presence tags of Key the remover had
	// seen (what [Map.Tags] returned there).
	Observed []Dot
}

// MapEntry is the value of one present key of a [Map].
type MapEntry struct {
	Key string
	// Register is the value of the key's LWW register, and HasRegister
	// whether the key has one.
	Register    json.RawMessage
	HasRegister bool
	// Counter is the value of the key's counter (saturated, see
	// [Counter.Value]), and HasCounter whether the key has one.
	Counter    int64
	HasCounter bool
}

// Map is an add-wins map from string keys to nested CRDTs: an [LWW] register
// written by [MapSet] ops and a [Counter] updated by [MapAdd] ops.
//
// A key is present while one of its presence tags (the Dots of its set and
// add ops) has not been removed by a [MapRemove]; a remove concurrent with an
// update loses. Removal affects presence only: the nested values are kept and
// merged per key whether or not the key is present, so a key that comes back
// shows its register's last write and its counter's total over all its ops.
//
// A key is meant to hold one kind of value. Should both sets and adds be
// applied to one key, the key keeps both a register and a counter and
// [MapEntry] reports both; the result still converges.
//
// The zero Map is empty, ready to use. The state grows with every op.
type Map struct {
	presence orCore
	fields   map[string]*mapField
}

type mapField struct {
	reg *LWW     // nil until a set
	ctr *Counter // nil until an add
}

// Apply applies op. Re-applying an op changes nothing. An invalid op is
// rejected with an error wrapping [ErrInvalidOp] and changes nothing.
func (m *Map) Apply(op MapOp) error {
	if !utf8.ValidString(op.Key) {
		return invalidOp("Map", "key %q is not valid UTF-8", op.Key)
	}
	switch op.Kind {
	case MapSet:
		reg := &LWW{}
		if err := reg.Apply(LWWOp{Dot: op.Dot, TS: op.TS, Value: op.Value}); err != nil {
			return fmt.Errorf("map key %q: %w", op.Key, err)
		}
		f := m.field(op.Key)
		if f.reg == nil {
			f.reg = reg
		} else {
			f.reg.offer(reg.w)
		}
	case MapAdd:
		ctr := &Counter{}
		if err := ctr.Apply(CounterOp{Dot: op.Dot, Writer: op.Writer, Delta: op.Delta}); err != nil {
			return fmt.Errorf("map key %q: %w", op.Key, err)
		}
		f := m.field(op.Key)
		if f.ctr == nil {
			f.ctr = ctr
		} else {
			f.ctr.put(op.Writer, op.Dot, op.Delta)
		}
	case MapRemove:
		if err := validateDots(op.Observed, "observed"); err != nil {
			return invalidOp("Map", "remove of %q: %v", op.Key, err)
		}
		m.presence.remove(op.Key, op.Observed)
		return nil
	default:
		return invalidOp("Map", "unknown op kind %d", uint8(op.Kind))
	}
	m.presence.add(op.Key, op.Dot)
	return nil
}

func (m *Map) field(k string) *mapField {
	if m.fields == nil {
		m.fields = map[string]*mapField{}
	}
	f := m.fields[k]
	if f == nil {
		f = &mapField{}
		m.fields[k] = f
	}
	return f
}

// Merge merges other into m: presence as an add-wins set of keys, nested
// values per key. other is not modified and shares no memory with m
// afterwards.
func (m *Map) Merge(other *Map) {
	if other == nil {
		return
	}
	m.presence.merge(other.presence)
	for k, of := range other.fields {
		f := m.field(k)
		if of.reg != nil {
			if f.reg == nil {
				f.reg = &LWW{}
			}
			f.reg.Merge(of.reg)
		}
		if of.ctr != nil {
			if f.ctr == nil {
				f.ctr = &Counter{}
			}
			f.ctr.Merge(of.ctr)
		}
	}
}

// Value returns the present keys' entries sorted by key, never nil.
func (m *Map) Value() []MapEntry {
	out := []MapEntry{}
	if m == nil {
		return out
	}
	for _, k := range m.presence.present() {
		e, _ := m.Get(k)
		out = append(out, e)
	}
	return out
}

// Len returns the number of present keys.
func (m *Map) Len() int {
	if m == nil {
		return 0
	}
	return m.presence.count()
}

// Get returns the entry of key k, and false if k is not present.
func (m *Map) Get(k string) (MapEntry, bool) {
	if m == nil || !m.presence.contains(k) {
		return MapEntry{}, false
	}
	e := MapEntry{Key: k}
	if f := m.fields[k]; f != nil {
		if f.reg != nil {
			e.Register, e.HasRegister = f.reg.Value()
		}
		if f.ctr != nil {
			e.Counter, e.HasCounter = f.ctr.Value(), true
		}
	}
	return e, true
}

// Tags returns the live presence tags of k, sorted: the Observed list of a
// remove issued against this replica.
func (m *Map) Tags(k string) []Dot {
	if m == nil {
		return []Dot{}
	}
	return m.presence.tags(k)
}

// Equal reports whether m and other hold the same state, including hidden
// nested values and tombstones. A nil map equals an empty one.
func (m *Map) Equal(other *Map) bool {
	var a, b Map
	if m != nil {
		a = *m
	}
	if other != nil {
		b = *other
	}
	if !a.presence.equal(b.presence) || len(a.fields) != len(b.fields) {
		return false
	}
	for k, f := range a.fields {
		of := b.fields[k]
		if of == nil || (f.reg == nil) != (of.reg == nil) || (f.ctr == nil) != (of.ctr == nil) {
			return false
		}
		if !f.reg.Equal(of.reg) || !f.ctr.Equal(of.ctr) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy of m.
func (m *Map) Clone() *Map {
	c := &Map{}
	c.Merge(m)
	return c
}

type mapWire struct {
	Keys []mapKeyWire `json:"keys"`
}

type mapKeyWire struct {
	Key      *string      `json:"key"`
	Tags     []dotJSON    `json:"tags,omitempty"`
	Removed  []dotJSON    `json:"removed,omitempty"`
	Register *lwwWire     `json:"register,omitempty"`
	Counter  *counterWire `json:"counter,omitempty"`
}

// MarshalJSON encodes the state as {"keys":[{"key":"k","tags":[dots],
// "removed":[dots],"register":<LWW>,"counter":<Counter>},...]}, keys in
// increasing byte order, with empty lists and absent nested values left out.
// Keys that are not present but have tombstones or nested values are
// included.
func (m *Map) MarshalJSON() ([]byte, error) {
	w := mapWire{Keys: []mapKeyWire{}}
	if m != nil {
		for _, k := range m.presence.keys() {
			e := m.presence[k]
			kw := mapKeyWire{Key: &k, Tags: e.live.sortedJSON(), Removed: e.removed.sortedJSON()}
			if f := m.fields[k]; f != nil {
				if f.reg != nil {
					rw := f.reg.wire()
					kw.Register = &rw
				}
				if f.ctr != nil {
					cw := f.ctr.wire()
					kw.Counter = &cw
				}
			}
			w.Keys = append(w.Keys, kw)
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the form written by [Map.MarshalJSON], replacing m's
// state. Keys and dots must be strictly increasing, as written; every key
// needs a presence tag or tombstone, and a nested register or counter must
// not be empty. Errors wrap [ErrMalformed].
func (m *Map) UnmarshalJSON(data []byte) error {
	var w mapWire
	if err := decodeStrict(data, &w); err != nil {
		return malformed("Map", err)
	}
	n := Map{presence: orCore{}}
	var prev string
	for i, kw := range w.Keys {
		if kw.Key == nil {
			return malformed("Map", fmt.Errorf("keys[%d]: missing \"key\"", i))
		}
		k := *kw.Key
		if i > 0 && k <= prev {
			return malformed("Map", fmt.Errorf("keys[%d]: %q not after %q (must be strictly increasing)", i, k, prev))
		}
		prev = k
		e, err := decodeOREntry(kw.Tags, kw.Removed)
		if err != nil {
			return malformed("Map", fmt.Errorf("keys[%d] (%q): %w", i, k, err))
		}
		n.presence[k] = e
		if kw.Register != nil {
			reg, err := kw.Register.state()
			switch {
			case err != nil:
				return malformed("Map", fmt.Errorf("keys[%d] (%q): register: %w", i, k, err))
			case !reg.set:
				return malformed("Map", fmt.Errorf("keys[%d] (%q): empty register", i, k))
			case reg.w.deleted:
				return malformed("Map", fmt.Errorf("keys[%d] (%q): a map register cannot hold a tombstone", i, k))
			}
			n.field(k).reg = &reg
		}
		if kw.Counter != nil {
			ctr, err := kw.Counter.state()
			switch {
			case err != nil:
				return malformed("Map", fmt.Errorf("keys[%d] (%q): counter: %w", i, k, err))
			case len(ctr.writers) == 0:
				return malformed("Map", fmt.Errorf("keys[%d] (%q): empty counter", i, k))
			}
			n.field(k).ctr = &ctr
		}
	}
	*m = n
	return nil
}
