package kv

import (
	"fmt"
	"strconv"

	"github.com/detbus/detbus/kv/crdt"
)

// maxJSONDepth bounds the nesting of a JSON value in an op, as
// encoding/json does.
const maxJSONDepth = 10000

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

// Field bits, to refuse duplicates.
const (
	fOp = 1 << iota
	fKey
	fField
	fValue
	fElement
	fDelta
	fWriter
	fObserved
	fContext
)

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
		nameB, err := d.bytes("a field name")
		if err != nil {
			return err
		}
		if err := d.expect(':', "':' after a field name"); err != nil {
			return err
		}
		d.ws()
		var bit int
		switch name := string(nameB); name {
		case "op":
			bit = fOp
			var b []byte
			if b, err = d.bytes(`"op", a string`); err == nil {
				op.Op = opName(b)
			}
		case "key":
			bit = fKey
			if d.t != nil {
				var b []byte
				if b, err = d.bytes(`"key", a string`); err == nil {
					op.Key = d.t.intern(b)
				}
			} else {
				op.Key, err = d.str(`"key", a string`)
			}
		case "field":
			bit = fField
			op.Field, err = d.str(`"field", a string`)
		case "element":
			bit = fElement
			op.Element, err = d.str(`"element", a string`)
		case "writer":
			bit = fWriter
			op.Writer, err = d.str(`"writer", a string`)
		case "value":
			bit = fValue
			start := d.i
			if err = d.value(0); err == nil {
				if d.t != nil {
					op.Value = d.b[start:d.i:d.i]
				} else {
					op.Value = append(make([]byte, 0, d.i-start), d.b[start:d.i]...)
				}
			}
		case "delta":
			bit = fDelta
			var n int64
			if n, err = d.int64(`"delta", an integer`); err == nil {
				op.Delta = &n
			}
		case "observed":
			bit = fObserved
			op.Observed, err = d.dots(`"observed"`)
		case "context":
			bit = fContext
			op.Context, err = d.dots(`"context"`)
		default:
			d.i = at
			return d.errf("unknown field %q (an op has op, key, field, value, element, delta, writer, observed, context)", truncate(name, 64))
		}
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			d.i = at
			return d.errf("field %q appears twice", nameB)
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

// int64 reads an integer that fits in an int64.
func (d *jdec) int64(what string) (int64, error) {
	start := d.i
	if d.i >= len(d.b) || !(d.b[d.i] == '-' || (d.b[d.i] >= '0' && d.b[d.i] <= '9')) {
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
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil {
		d.i = start
		return 0, d.errf("%s is out of the int64 range", what)
	}
	return n, nil
}

// uint64 reads a non-negative integer that fits in a uint64.
func (d *jdec) uint64(what string) (uint64, error) {
	start := d.i
	if d.i >= len(d.b) || d.b[d.i] < '0' || d.b[d.i] > '9' {
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
	n, err := strconv.ParseUint(string(d.b[start:d.i]), 10, 64)
	if err != nil {
		d.i = start
		return 0, d.errf("%s is out of the uint64 range", what)
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
			dot.Index, err = d.uint64(`"index", a non-negative integer`)
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
