package kv

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/detbus/detbus/kv/crdt"
)

// MaxValueDepth bounds how deep an op's value is, counting the value
// itself: 1 for a scalar or an empty array, 2 for [1] or {"a":[]}, and so
// on. A deeper value is rejected
// by the fold, the same on every replica: a value must stay readable and
// encodable inside the store's snapshots, whose own structure adds levels
// around it, well within what encoders accept.
const MaxValueDepth = 100

const maxJSONDepth = MaxValueDepth

// decodeJSONOp decodes an op from JSON. It reads the op's fields directly,
// rejecting what encoding/json would also reject plus: unknown and
// duplicated fields, null where a string, number or list is expected,
// non-integer deltas, invalid UTF-8 and lone surrogates in strings, and
// anything after the object. Errors are deterministic: they depend on the
// bytes alone.
func decodeJSONOp(data []byte) (Op, error) { return decodeJSONOpFor(data, nil) }

// decodeJSONOpFor is decodeJSONOp for the fold of an op on table t: with
// a non-nil t, a key t already holds is not allocated again, and the
// value is a slice of data, not a copy.
func decodeJSONOpFor(data []byte, t *table) (Op, error) {
	d := jdec{b: data, t: t}
	var op Op
	if err := d.object(&op); err != nil {
		return Op{}, err
	}
	d.ws()
	if d.i != len(d.b) {
		return Op{}, d.errf("trailing data after the op object")
	}
	return op, nil
}

// jdec reads JSON from b, at offset i.
type jdec struct {
	b []byte
	i int
	t *table // see decodeJSONOpFor
}

func (d *jdec) errf(format string, args ...any) error {
	return fmt.Errorf("%w: JSON at byte %d: %s", ErrInvalidOp, d.i, fmt.Sprintf(format, args...))
}

// jsonFields is a jdec as the fieldReader of readField.
type jsonFields jdec

func (f jsonFields) opName(what string) (jsonFields, string, error) {
	b, err := (*jdec)(&f).bytes(what)
	return f, opName(b), err
}

func (f jsonFields) key(what string) (jsonFields, string, error) {
	b, err := (*jdec)(&f).bytes(what)
	return f, f.t.intern(b), err
}

func (f jsonFields) str(what string) (jsonFields, string, error) {
	s, err := (*jdec)(&f).str(what)
	return f, s, err
}

func (f jsonFields) int64(what string) (jsonFields, int64, error) {
	n, err := (*jdec)(&f).integer(what, true)
	return f, int64(n), err
}

func (f jsonFields) dots(what string) (jsonFields, []crdt.Dot, error) {
	ds, err := (*jdec)(&f).dots(what)
	return f, ds, err
}

// value checks the value and returns it: a slice of the input when
// folding on a table, else a copy.
func (f jsonFields) value() (jsonFields, json.RawMessage, error) {
	start := f.i
	if err := (*jdec)(&f).value(0); err != nil {
		return f, nil, err
	}
	if f.t != nil {
		return f, f.b[start:f.i:f.i], nil
	}
	return f, append(make([]byte, 0, f.i-start), f.b[start:f.i]...), nil
}

func (d *jdec) object(op *Op) error {
	if err := d.expect('{', "an op object '{'"); err != nil {
		return err
	}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return nil
	}
	var seen int
	for {
		d.ws()
		at := d.i
		name, err := d.bytes("a field name")
		if err != nil {
			return err
		}
		if err := d.expect(':', "':' after a field name"); err != nil {
			return err
		}
		d.ws()
		f, bit, err := readField(jsonFields(*d), string(name), op)
		*d = jdec(f)
		if bit == 0 {
			d.i = at
			return d.errf("unknown field %q (%s)", truncate(string(name), 64), opFields)
		}
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			d.i = at
			return d.errf("field %q appears twice", name)
		}
		seen |= bit
		d.ws()
		if d.i >= len(d.b) {
			return d.errf("unexpected end, want ',' or '}'")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errf("want ',' or '}' after a field, found %s", d.found())
		}
	}
}

// integer reads an integer that fits in an int64 when signed, else in a
// uint64, and returns its bits.
func (d *jdec) integer(what string, signed bool) (uint64, error) {
	start := d.i
	if d.i >= len(d.b) || !(signed && d.b[d.i] == '-' || d.b[d.i] >= '0' && d.b[d.i] <= '9') {
		return 0, d.errf("want %s, found %s", what, d.found())
	}
	integer, err := d.number()
	if err != nil {
		return 0, err
	}
	if !integer {
		d.i = start
		return 0, d.errf("want %s, found a number with a fraction or exponent", what)
	}
	text := string(d.b[start:d.i])
	var n uint64
	rng := "uint64"
	if signed {
		var i int64
		i, err = strconv.ParseInt(text, 10, 64)
		n, rng = uint64(i), "int64"
	} else {
		n, err = strconv.ParseUint(text, 10, 64)
	}
	if err != nil {
		d.i = start
		return 0, d.errf("%s is out of the %s range", what, rng)
	}
	return n, nil
}

// dots reads a list of dots, [{"esk":"kv.t","index":3},...]; [] gives an
// empty, non-nil list.
func (d *jdec) dots(what string) ([]crdt.Dot, error) {
	if d.i >= len(d.b) || d.b[d.i] != '[' {
		return nil, d.errf("want %s, a list of dots, found %s", what, d.found())
	}
	d.i++
	out := []crdt.Dot{}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return out, nil
	}
	for {
		d.ws()
		dot, err := d.dot(what)
		if err != nil {
			return nil, err
		}
		out = append(out, dot)
		d.ws()
		if d.i >= len(d.b) {
			return nil, d.errf("unexpected end in %s", what)
		}
		if d.b[d.i] == ']' {
			d.i++
			return out, nil
		}
		if d.b[d.i] != ',' {
			return nil, d.errf("want ',' or ']' in %s, found %s", what, d.found())
		}
		d.i++
	}
}

func (d *jdec) dot(what string) (crdt.Dot, error) {
	if err := d.expect('{', "a dot {\"esk\":...,\"index\":...} in "+what); err != nil {
		return crdt.Dot{}, err
	}
	var dot crdt.Dot
	var seenESK, seenIndex bool
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		return crdt.Dot{}, d.errf("a dot in %s lacks \"esk\" and \"index\"", what)
	}
	for {
		d.ws()
		at := d.i
		nameB, err := d.bytes("a dot field name")
		if err != nil {
			return crdt.Dot{}, err
		}
		if err := d.expect(':', "':' after a field name"); err != nil {
			return crdt.Dot{}, err
		}
		d.ws()
		switch name := string(nameB); name {
		case "esk":
			if seenESK {
				d.i = at
				return crdt.Dot{}, d.errf("field \"esk\" appears twice in a dot")
			}
			seenESK = true
			if dot.ESK, err = d.str(`"esk", a string`); err == nil && dot.ESK == "" {
				err = d.errf("a dot in %s has an empty \"esk\"", what)
			}
		case "index":
			if seenIndex {
				d.i = at
				return crdt.Dot{}, d.errf("field \"index\" appears twice in a dot")
			}
			seenIndex = true
			dot.Index, err = d.integer(`"index", a non-negative integer`, false)
		default:
			d.i = at
			return crdt.Dot{}, d.errf("unknown field %q in a dot (a dot has esk and index)", truncate(name, 64))
		}
		if err != nil {
			return crdt.Dot{}, err
		}
		d.ws()
		if d.i >= len(d.b) {
			return crdt.Dot{}, d.errf("unexpected end in a dot")
		}
		if d.b[d.i] == ',' {
			d.i++
			continue
		}
		if d.b[d.i] != '}' {
			return crdt.Dot{}, d.errf("want ',' or '}' in a dot, found %s", d.found())
		}
		d.i++
		switch {
		case !seenESK:
			return crdt.Dot{}, d.errf("a dot in %s lacks \"esk\"", what)
		case !seenIndex:
			return crdt.Dot{}, d.errf("a dot in %s lacks \"index\"", what)
		}
		return dot, nil
	}
}
