package crdt

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
)

// ErrInvalidOp is wrapped by every error that an Apply method returns for an
// op it cannot accept. A rejected op leaves the state unchanged.
var ErrInvalidOp = errors.New("crdt: invalid op")

// ErrMalformed is wrapped by every error that an UnmarshalJSON method returns
// for input that is not a well-formed encoding of the type's state. On error
// the receiver is left unchanged.
var ErrMalformed = errors.New("crdt: malformed state")

// Dot is the identity of one event: the event source key (ESK) it was written
// under and its index in that ESK's log. A Dot is unique across the system,
// so two ops with the same Dot are the same op.
//
// Dots are totally ordered by ESK (byte-wise) and then by Index; see
// [Dot.Compare]. The zero Dot, with an empty ESK, is not a valid identity and
// is rejected wherever an op carries it.
type Dot struct {
	// ESK is the event source key the event was written under.
	ESK string
	// Index is the event's 0-based position in its ESK's log.
	Index uint64
}

// Compare returns -1, 0 or +1 as d is before, equal to or after o: ESKs are
// compared byte-wise first and then indices numerically.
func (d Dot) Compare(o Dot) int {
	if c := strings.Compare(d.ESK, o.ESK); c != 0 {
		return c
	}
	return cmp.Compare(d.Index, o.Index)
}

// Less reports whether d.Compare(o) < 0.
func (d Dot) Less(o Dot) bool { return d.Compare(o) < 0 }

// String returns d as "<esk>@<index>", for example "orders.eu@3".
func (d Dot) String() string { return d.ESK + "@" + strconv.FormatUint(d.Index, 10) }

// validate reports why d cannot identify an event, or nil.
func (d Dot) validate() error {
	if d.ESK == "" {
		return fmt.Errorf("dot %s has an empty ESK", d)
	}
	if !utf8.ValidString(d.ESK) {
		return fmt.Errorf("dot %q has an ESK that is not valid UTF-8", d.ESK)
	}
	return nil
}

// dotJSON is the encoded form of a Dot. It has no MarshalJSON method, so
// encoding/json writes it directly, which keeps encoding states cheap; its
// UnmarshalJSON is strict.
type dotJSON struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
}

// MarshalJSON encodes d as {"esk":"<esk>","index":<index>}.
func (d Dot) MarshalJSON() ([]byte, error) {
	return json.Marshal(dotJSON(d))
}

// UnmarshalJSON decodes the form written by [Dot.MarshalJSON]. Both fields
// are required, the ESK must be non-empty and no other field is allowed.
func (d *Dot) UnmarshalJSON(data []byte) error {
	return (*dotJSON)(d).UnmarshalJSON(data)
}

func (d *dotJSON) UnmarshalJSON(data []byte) error {
	var w struct {
		ESK   *string `json:"esk"`
		Index *uint64 `json:"index"`
	}
	if err := decodeStrict(data, &w); err != nil {
		return fmt.Errorf("dot: %w", err)
	}
	if w.ESK == nil || w.Index == nil {
		return errors.New("dot: needs both \"esk\" and \"index\"")
	}
	nd := Dot{ESK: *w.ESK, Index: *w.Index}
	if err := nd.validate(); err != nil {
		return err
	}
	*d = dotJSON(nd)
	return nil
}

// decodeStrict decodes exactly one JSON value from data into v, rejecting
// null, unknown object fields and trailing data.
func decodeStrict(data []byte, v any) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return errors.New("null is not allowed")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// malformed wraps a decoding problem of the named type in ErrMalformed.
func malformed(typ string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, typ, err)
}

// invalidOp wraps an op validation problem of the named type in ErrInvalidOp.
func invalidOp(typ string, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOp, typ, fmt.Sprintf(format, args...))
}

// canonicalValue validates a JSON value and returns it in the form
// encoding/json writes it: compacted, with <, >, &, U+2028 and U+2029 inside
// strings escaped. Storing values in this form makes encoding a state and
// decoding it again return the same bytes. The result is a fresh slice.
func canonicalValue(v []byte) (json.RawMessage, error) {
	if out, ok := canonicalFast(v); ok {
		return out, nil
	}
	if len(bytes.TrimSpace(v)) == 0 {
		return nil, errors.New("value is empty")
	}
	out, err := json.Marshal(json.RawMessage(v)) // validates as it compacts
	if err != nil {
		return nil, errors.New("value is not valid JSON")
	}
	if !utf8.Valid(v) {
		return nil, errors.New("value is not valid UTF-8")
	}
	return out, nil
}

// checkTimestamp reports why ts cannot be stored (and so encoded), or nil.
func checkTimestamp(ts hlc.Timestamp) error {
	if ts.WallTime < 0 {
		return fmt.Errorf("timestamp %s has a negative wall time", ts)
	}
	return nil
}

// dotSet is a set of dots. A nil dotSet is empty; methods that add allocate.
type dotSet map[Dot]struct{}

func (s dotSet) has(d Dot) bool {
	_, ok := s[d]
	return ok
}

// sorted returns the dots of s in increasing order, never nil.
func (s dotSet) sorted() []Dot {
	out := make([]Dot, 0, len(s))
	for d := range s {
		out = append(out, d)
	}
	slices.SortFunc(out, Dot.Compare)
	return out
}

// sortedJSON returns the dots of s in increasing order in their encoded
// form, or nil if s is empty.
func (s dotSet) sortedJSON() []dotJSON {
	if len(s) == 0 {
		return nil
	}
	ds := s.sorted()
	out := make([]dotJSON, len(ds))
	for i, d := range ds {
		out[i] = dotJSON(d)
	}
	return out
}

func (s dotSet) equal(o dotSet) bool {
	if len(s) != len(o) {
		return false
	}
	for d := range s {
		if !o.has(d) {
			return false
		}
	}
	return true
}

// validateDots checks every dot of ds; what names the list in errors.
func validateDots(ds []Dot, what string) error {
	for i, d := range ds {
		if err := d.validate(); err != nil {
			return fmt.Errorf("%s[%d]: %w", what, i, err)
		}
	}
	return nil
}

// decodeDotList turns a decoded dot list into a set, requiring the list to be
// strictly increasing (sorted, no duplicates) as MarshalJSON writes it.
func decodeDotList(ds []dotJSON, what string) (dotSet, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	s := make(dotSet, len(ds))
	for i, dj := range ds {
		d := Dot(dj)
		if i > 0 && Dot(ds[i-1]).Compare(d) >= 0 {
			return nil, fmt.Errorf("%s: dots not strictly increasing at [%d] (%s after %s)", what, i, d, Dot(ds[i-1]))
		}
		s[d] = struct{}{}
	}
	return s, nil
}
