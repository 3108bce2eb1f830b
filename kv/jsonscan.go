package kv

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the JSON scanner under decodeJSONOp: white space, strings,
// numbers and the validation of whole values, with errors that name the
// byte offset.

// ws skips white space.
func (d *jdec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// expect consumes c after optional white space.
func (d *jdec) expect(c byte, what string) error {
	d.ws()
	if d.i >= len(d.b) {
		return d.errf("unexpected end, want %s", what)
	}
	if d.b[d.i] != c {
		return d.errf("want %s, found %s", what, d.found())
	}
	d.i++
	return nil
}

// found describes the byte at the offset, for errors.
func (d *jdec) found() string {
	if d.i >= len(d.b) {
		return "the end"
	}
	c := d.b[d.i]
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// str reads a JSON string (what names the expected thing for errors).
func (d *jdec) str(what string) (string, error) {
	b, err := d.bytes(what)
	return string(b), err
}

// bytes reads a JSON string: a slice of the input when it has no escapes,
// else a decoded copy.
func (d *jdec) bytes(what string) ([]byte, error) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, d.errf("want %s, found %s", what, d.found())
	}
	start := d.i + 1
	i := start
	for i < len(d.b) {
		c := d.b[i]
		switch {
		case c == '"':
			s := d.b[start:i]
			if !utf8.Valid(s) {
				return nil, d.errf("%s is not valid UTF-8", what)
			}
			d.i = i + 1
			return s, nil
		case c == '\\':
			return d.strSlow(start, what)
		case c < 0x20:
			d.i = i
			return nil, d.errf("control character in a string")
		}
		i++
	}
	d.i = len(d.b)
	return nil, d.errf("unterminated string")
}

// opName returns the op name b as a string, the constant for known ones.
func opName(b []byte) string {
	switch string(b) {
	case OpSet:
		return OpSet
	case OpDelete:
		return OpDelete
	case OpAdd:
		return OpAdd
	case OpRemove:
		return OpRemove
	case OpIncr:
		return OpIncr
	}
	return string(b)
}

// strSlow reads a string with escapes, from its first byte after the
// quote.
func (d *jdec) strSlow(start int, what string) ([]byte, error) {
	out := make([]byte, 0, 16)
	i := start
	for i < len(d.b) {
		c := d.b[i]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return nil, d.errf("%s is not valid UTF-8", what)
			}
			d.i = i + 1
			return out, nil
		case c < 0x20:
			d.i = i
			return nil, d.errf("control character in a string")
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		// An escape.
		if i+1 >= len(d.b) {
			break
		}
		i++
		switch e := d.b[i]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			d.i = i - 1
			r, ok := hex4(d.b, i+1)
			if !ok {
				return nil, d.errf("bad \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if i+6 < len(d.b) && d.b[i+1] == '\\' && d.b[i+2] == 'u' {
					r2, ok = hex4(d.b, i+3)
				}
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					return nil, d.errf("lone surrogate in a \\u escape")
				}
				r = dec
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			d.i = i
			return nil, d.errf("bad escape '\\%c'", e)
		}
		i++
	}
	d.i = len(d.b)
	return nil, d.errf("unterminated string")
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipStr checks a string inside a value without decoding it.
func (d *jdec) skipStr() error {
	i := d.i + 1
	for i < len(d.b) {
		c := d.b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return nil
		case c == '\\':
			// Validate the escape by decoding the rest of the string.
			_, err := d.strSlow(d.i+1, "a string")
			return err
		case c < 0x20:
			d.i = i
			return d.errf("control character in a string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(d.b[i:])
			if r == utf8.RuneError && n == 1 {
				d.i = i
				return d.errf("a string is not valid UTF-8")
			}
			i += n
		}
	}
	d.i = len(d.b)
	return d.errf("unterminated string")
}

// value checks one JSON value and moves past it.
func (d *jdec) value(depth int) error {
	if depth >= maxJSONDepth {
		return d.errf("value nested deeper than %d levels", maxJSONDepth)
	}
	if d.i >= len(d.b) {
		return d.errf("unexpected end, want a value")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		d.ws()
		if d.i < len(d.b) && d.b[d.i] == '}' {
			d.i++
			return nil
		}
		for {
			d.ws()
			if d.i >= len(d.b) || d.b[d.i] != '"' {
				return d.errf("want an object key, found %s", d.found())
			}
			if err := d.skipStr(); err != nil {
				return err
			}
			if err := d.expect(':', "':' after an object key"); err != nil {
				return err
			}
			d.ws()
			if err := d.value(depth + 1); err != nil {
				return err
			}
			d.ws()
			if d.i >= len(d.b) {
				return d.errf("unexpected end in an object")
			}
			if d.b[d.i] == '}' {
				d.i++
				return nil
			}
			if d.b[d.i] != ',' {
				return d.errf("want ',' or '}' in an object, found %s", d.found())
			}
			d.i++
		}
	case c == '[':
		d.i++
		d.ws()
		if d.i < len(d.b) && d.b[d.i] == ']' {
			d.i++
			return nil
		}
		for {
			d.ws()
			if err := d.value(depth + 1); err != nil {
				return err
			}
			d.ws()
			if d.i >= len(d.b) {
				return d.errf("unexpected end in an array")
			}
			if d.b[d.i] == ']' {
				d.i++
				return nil
			}
			if d.b[d.i] != ',' {
				return d.errf("want ',' or ']' in an array, found %s", d.found())
			}
			d.i++
		}
	case c == '"':
		return d.skipStr()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number()
		return err
	}
	return d.errf("want a value, found %s", d.found())
}

// literal consumes true, false or null.
func (d *jdec) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return d.errf("want a value, found %s", d.found())
	}
	d.i += len(lit)
	return nil
}

// number checks a JSON number and reports whether it is an integer (no
// fraction, no exponent).
func (d *jdec) number() (integer bool, err error) {
	i := d.i
	if i < len(d.b) && d.b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(d.b) && d.b[i] >= '0' && d.b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(d.b) && d.b[i] == '0':
		i++
	case digits() == 0:
		d.i = i
		return false, d.errf("want a digit, found %s", d.found())
	}
	integer = true
	if i < len(d.b) && d.b[i] == '.' {
		i++
		integer = false
		if digits() == 0 {
			d.i = i
			return false, d.errf("want a digit after '.', found %s", d.found())
		}
	}
	if i < len(d.b) && (d.b[i] == 'e' || d.b[i] == 'E') {
		i++
		integer = false
		if i < len(d.b) && (d.b[i] == '+' || d.b[i] == '-') {
			i++
		}
		if digits() == 0 {
			d.i = i
			return false, d.errf("want a digit in the exponent, found %s", d.found())
		}
	}
	d.i = i
	return integer, nil
}

// truncate shortens s to at most n bytes (on a rune boundary) for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
