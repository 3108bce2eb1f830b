package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
)

// ORSetOp adds an element to an [ORSet] or removes it.
type ORSetOp struct {
	// Dot is the identity of the event that carries the op. An add tags
	// Element with it; a remove does not use it.
	Dot Dot
	// TS is the event's hybrid logical clock time. The set does not use it.
	TS hlc.Timestamp
	// Remove makes the op a remove; otherwise it is an add.
	Remove bool
	// Element is the element added or removed. It must be valid UTF-8.
	Element string
	// Observed, for a remove, lists the add tags of Element the remover had
	// seen (what [ORSet.Tags] returned there). Only those tags are removed,
	// so an add the remover had not seen survives. Ignored by an add.
	Observed []Dot
}

// ORSet is an add-wins observed-remove set of strings. An element is present
// while at least one of its add tags has not been removed.
//
// Removed tags are kept as tombstones, so that an add delivered after the
// remove that observed it stays removed; the state grows with every add and
// remove. The zero ORSet is an empty set, ready to use.
type ORSet struct {
	c orCore
}

// Apply applies op. Re-applying an op changes nothing. An invalid op (zero
// Dot on an add, a zero observed Dot, an element that is not valid UTF-8) is
// rejected with an error wrapping [ErrInvalidOp].
func (s *ORSet) Apply(op ORSetOp) error {
	if !utf8.ValidString(op.Element) {
		return invalidOp("ORSet", "element %q is not valid UTF-8", op.Element)
	}
	if op.Remove {
		if err := validateDots(op.Observed, "observed"); err != nil {
			return invalidOp("ORSet", "remove of %q: %v", op.Element, err)
		}
		s.c.remove(op.Element, op.Observed)
		return nil
	}
	if err := op.Dot.validate(); err != nil {
		return invalidOp("ORSet", "add of %q: %v", op.Element, err)
	}
	s.c.add(op.Element, op.Dot)
	return nil
}

// Merge merges other into s: the union of both sides' tags and tombstones.
// other is not modified and shares no memory with s afterwards.
func (s *ORSet) Merge(other *ORSet) {
	if other != nil {
		s.c.merge(other.c)
	}
}

// Value returns the present elements in increasing byte order, never nil.
func (s *ORSet) Value() []string {
	if s == nil {
		return []string{}
	}
	return s.c.present()
}

// Len returns the number of present elements.
func (s *ORSet) Len() int {
	if s == nil {
		return 0
	}
	return s.c.count()
}

// Contains reports whether e is present.
func (s *ORSet) Contains(e string) bool { return s != nil && s.c.contains(e) }

// Tags returns the live add tags of e, sorted: the Observed list of a remove
// issued against this replica.
func (s *ORSet) Tags(e string) []Dot {
	if s == nil {
		return []Dot{}
	}
	return s.c.tags(e)
}

// Equal reports whether s and other hold the same state, tombstones
// included. A nil set equals an empty one.
func (s *ORSet) Equal(other *ORSet) bool {
	var a, b orCore
	if s != nil {
		a = s.c
	}
	if other != nil {
		b = other.c
	}
	return a.equal(b)
}

// Clone returns a deep copy of s.
func (s *ORSet) Clone() *ORSet {
	c := &ORSet{}
	c.Merge(s)
	return c
}

type orSetWire struct {
	Elements []orElemWire `json:"elements"`
}

type orElemWire struct {
	Element *string   `json:"element"`
	Tags    []dotJSON `json:"tags,omitempty"`
	Removed []dotJSON `json:"removed,omitempty"`
}

// MarshalJSON encodes the state as
// {"elements":[{"element":"x","tags":[dots],"removed":[dots]},...]}, elements
// in increasing byte order and dots in increasing order, empty lists left out.
func (s *ORSet) MarshalJSON() ([]byte, error) {
	w := orSetWire{Elements: []orElemWire{}}
	if s != nil {
		for _, k := range s.c.keys() {
			e := s.c[k]
			w.Elements = append(w.Elements, orElemWire{Element: &k, Tags: e.live.sortedJSON(), Removed: e.removed.sortedJSON()})
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the form written by [ORSet.MarshalJSON], replacing
// s's state. Elements and dots must be strictly increasing, as written.
// Errors wrap [ErrMalformed].
func (s *ORSet) UnmarshalJSON(data []byte) error {
	var w orSetWire
	if err := decodeStrict(data, &w); err != nil {
		return malformed("ORSet", err)
	}
	c := orCore{}
	var prev string
	for i, e := range w.Elements {
		if e.Element == nil {
			return malformed("ORSet", fmt.Errorf("elements[%d]: missing \"element\"", i))
		}
		if i > 0 && *e.Element <= prev {
			return malformed("ORSet", fmt.Errorf("elements[%d]: %q not after %q (must be strictly increasing)", i, *e.Element, prev))
		}
		prev = *e.Element
		entry, err := decodeOREntry(e.Tags, e.Removed)
		if err != nil {
			return malformed("ORSet", fmt.Errorf("elements[%d] (%q): %w", i, *e.Element, err))
		}
		c[*e.Element] = entry
	}
	s.c = c
	return nil
}

// orCore is the state of an add-wins set of string keys, shared by [ORSet]
// and the key presence of [Map]. A nil orCore is empty.
//
// Invariants: every entry has at least one live or removed tag, and no tag is
// both live and removed.
type orCore map[string]*orEntry

type orEntry struct {
	live    dotSet // add tags not removed
	removed dotSet // tombstones: removed tags, whether or not their add arrived
}

func (c *orCore) entry(k string) *orEntry {
	if *c == nil {
		*c = orCore{}
	}
	e := (*c)[k]
	if e == nil {
		e = &orEntry{}
		(*c)[k] = e
	}
	return e
}

func (c *orCore) add(k string, d Dot) {
	if e := (*c)[k]; e != nil && e.removed.has(d) {
		return
	}
	e := c.entry(k)
	if e.live == nil {
		e.live = dotSet{}
	}
	e.live[d] = struct{}{}
}

func (c *orCore) remove(k string, observed []Dot) {
	if len(observed) == 0 {
		return
	}
	e := c.entry(k)
	if e.removed == nil {
		e.removed = dotSet{}
	}
	for _, d := range observed {
		e.removed[d] = struct{}{}
		delete(e.live, d)
	}
}

func (c *orCore) merge(o orCore) {
	for k, oe := range o {
		e := c.entry(k)
		for d := range oe.removed {
			if e.removed == nil {
				e.removed = dotSet{}
			}
			e.removed[d] = struct{}{}
			delete(e.live, d)
		}
		for d := range oe.live {
			if !e.removed.has(d) {
				if e.live == nil {
					e.live = dotSet{}
				}
				e.live[d] = struct{}{}
			}
		}
	}
}

func (c orCore) contains(k string) bool {
	e := c[k]
	return e != nil && len(e.live) > 0
}

func (c orCore) tags(k string) []Dot {
	if e := c[k]; e != nil {
		return e.live.sorted()
	}
	return []Dot{}
}

// keys returns every key with an entry, present or not, sorted.
func (c orCore) keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// count returns the number of present keys.
func (c orCore) count() int {
	n := 0
	for _, e := range c {
		if len(e.live) > 0 {
			n++
		}
	}
	return n
}

// present returns the present keys, sorted.
func (c orCore) present() []string {
	out := []string{}
	for k, e := range c {
		if len(e.live) > 0 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (c orCore) equal(o orCore) bool {
	if len(c) != len(o) {
		return false
	}
	for k, e := range c {
		oe := o[k]
		if oe == nil || !e.live.equal(oe.live) || !e.removed.equal(oe.removed) {
			return false
		}
	}
	return true
}

// decodeOREntry builds an entry from its encoded tag lists and checks the
// invariants.
func decodeOREntry(tags, removed []dotJSON) (*orEntry, error) {
	live, err := decodeDotList(tags, "tags")
	if err != nil {
		return nil, err
	}
	rm, err := decodeDotList(removed, "removed")
	if err != nil {
		return nil, err
	}
	if len(live) == 0 && len(rm) == 0 {
		return nil, errors.New("no tags and no removed tags")
	}
	for d := range live {
		if rm.has(d) {
			return nil, fmt.Errorf("tag %s is both live and removed", d)
		}
	}
	return &orEntry{live: live, removed: rm}, nil
}
