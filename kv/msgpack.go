package kv

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/detbus/detbus/kv/crdt"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// EncodeMsgpack writes op as a msgpack map with the JSON field names, its
// value as a bin holding the JSON text. Like [Op.MarshalJSON] it leaves
// out empty fields but keeps an empty non-nil Observed or Context.
func (op Op) EncodeMsgpack(enc *msgpack.Encoder) error {
	type field struct {
		name string
		put  func() error
	}
	var fields []field
	str := func(name, v string, always bool) {
		if v != "" || always {
			fields = append(fields, field{name, func() error { return enc.EncodeString(v) }})
		}
	}
	dots := func(name string, ds []crdt.Dot) {
		if ds == nil {
			return
		}
		fields = append(fields, field{name, func() error {
			if err := enc.EncodeArrayLen(len(ds)); err != nil {
				return err
			}
			for _, d := range ds {
				if err := enc.EncodeMapLen(2); err != nil {
					return err
				}
				if err := enc.EncodeString("esk"); err != nil {
					return err
				}
				if err := enc.EncodeString(d.ESK); err != nil {
					return err
				}
				if err := enc.EncodeString("index"); err != nil {
					return err
				}
				if err := enc.EncodeUint(d.Index); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	str("op", op.Op, true)
	str("key", op.Key, true)
	str("field", op.Field, false)
	if op.Value != nil {
		fields = append(fields, field{"value", func() error { return enc.EncodeBytes(op.Value) }})
	}
	str("element", op.Element, false)
	if op.Delta != nil {
		fields = append(fields, field{"delta", func() error { return enc.EncodeInt(*op.Delta) }})
	}
	str("writer", op.Writer, false)
	dots("observed", op.Observed)
	dots("context", op.Context)
	if err := enc.EncodeMapLen(len(fields)); err != nil {
		return err
	}
	for _, f := range fields {
		if err := enc.EncodeString(f.name); err != nil {
			return err
		}
		if err := f.put(); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads an op from the msgpack form [Op.EncodeMsgpack]
// writes, or with "value" as any msgpack value (see [DecodeOp]). It is
// called by [transport.Msgpack], which has checked the structure of the
// whole payload first, so no declared length exceeds the data.
func (op *Op) DecodeMsgpack(dec *msgpack.Decoder) error {
	m := mpdec{dec}
	n, err := m.mapLen("an op")
	if err != nil {
		return err
	}
	var o Op
	var seen int
	for range n {
		name, err := m.str("a field name")
		if err != nil {
			return err
		}
		_, bit, err := readField(msgpackFields(m), name, &o)
		if bit == 0 {
			return mpErr("unknown field %q (%s)", truncate(name, 64), opFields)
		}
		if err != nil {
			return err
		}
		if seen&bit != 0 {
			return mpErr("field %q appears twice", name)
		}
		seen |= bit
	}
	*op = o
	return nil
}

// mpdec reads msgpack values strictly: each helper checks the type code
// before decoding, so that nothing is converted silently.
type mpdec struct{ d *msgpack.Decoder }

func mpErr(format string, args ...any) error {
	return fmt.Errorf("%w: msgpack: %s", ErrInvalidOp, fmt.Sprintf(format, args...))
}

func (m mpdec) peek() (byte, error) {
	c, err := m.d.PeekCode()
	if err != nil {
		return 0, mpErr("unexpected end")
	}
	return c, nil
}

// next returns the type code of the next value if is accepts it; want
// says what it should be, for errors.
func (m mpdec) next(what, want string, is func(byte) bool) (byte, error) {
	c, err := m.peek()
	if err != nil {
		return 0, err
	}
	if !is(c) {
		return 0, mpErr("%s must be %s, found code 0x%02x", what, want, c)
	}
	return c, nil
}

func isMap(c byte) bool { return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32 }
func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}
func isInt(c byte) bool {
	return msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Uint64) || (c >= msgpcode.Int8 && c <= msgpcode.Int64)
}

func (m mpdec) mapLen(what string) (int, error) {
	if _, err := m.next(what, "a map", isMap); err != nil {
		return 0, err
	}
	n, err := m.d.DecodeMapLen()
	if err != nil {
		return 0, mpErr("%s: %v", what, err)
	}
	return n, nil
}

func (m mpdec) str(what string) (string, error) {
	if _, err := m.next(what, "a string", msgpcode.IsString); err != nil {
		return "", err
	}
	s, err := m.d.DecodeString()
	if err != nil {
		return "", mpErr("%s: %v", what, err)
	}
	if !utf8.ValidString(s) {
		return "", mpErr("%s is not valid UTF-8", what)
	}
	return s, nil
}

// integer reads an integer as the bits of a uint64 or an int64, and
// whether it is negative.
func (m mpdec) integer(what string) (bits uint64, neg bool, err error) {
	c, err := m.next(what, "an integer", isInt)
	if err != nil {
		return 0, false, err
	}
	if c == msgpcode.Uint64 {
		u, err := m.d.DecodeUint64()
		if err != nil {
			return 0, false, mpErr("%s: %v", what, err)
		}
		return u, false, nil
	}
	n, err := m.d.DecodeInt64()
	if err != nil {
		return 0, false, mpErr("%s: %v", what, err)
	}
	return uint64(n), n < 0, nil
}

func (m mpdec) int64(what string) (int64, error) {
	n, neg, err := m.integer(what)
	if err == nil && !neg && n > math.MaxInt64 {
		return 0, mpErr("%s is out of the int64 range", what)
	}
	return int64(n), err
}

func (m mpdec) uint64(what string) (uint64, error) {
	n, neg, err := m.integer(what)
	if err == nil && neg {
		return 0, mpErr("%s must not be negative", what)
	}
	return n, err
}

func (m mpdec) dots(what string) ([]crdt.Dot, error) {
	if _, err := m.next(what, "an array of dots", isArray); err != nil {
		return nil, err
	}
	n, err := m.d.DecodeArrayLen()
	if err != nil {
		return nil, mpErr("%s: %v", what, err)
	}
	out := []crdt.Dot{} // not sized by n: n is the sender's claim
	for range n {
		k, err := m.mapLen("a dot in " + what)
		if err != nil {
			return nil, err
		}
		var d crdt.Dot
		var seenESK, seenIndex bool
		for range k {
			name, err := m.str("a dot field name")
			if err != nil {
				return nil, err
			}
			switch strings.ToLower(name) {
			case "esk":
				if seenESK {
					return nil, mpErr("field \"esk\" appears twice in a dot")
				}
				seenESK = true
				if d.ESK, err = m.str(`"esk"`); err == nil && d.ESK == "" {
					err = mpErr("a dot in %s has an empty \"esk\"", what)
				}
			case "index":
				if seenIndex {
					return nil, mpErr("field \"index\" appears twice in a dot")
				}
				seenIndex = true
				d.Index, err = m.uint64(`"index"`)
			default:
				return nil, mpErr("unknown field %q in a dot (a dot has esk and index)", truncate(name, 64))
			}
			if err != nil {
				return nil, err
			}
		}
		if !seenESK || !seenIndex {
			return nil, mpErr("a dot in %s needs \"esk\" and \"index\"", what)
		}
		out = append(out, d)
	}
	return out, nil
}

// msgpackFields is an mpdec as the fieldReader of readField. Its errors
// name a field by the part of readField's wording before the comma
// (`"delta"`).
type msgpackFields mpdec

// fieldName is the name of the field what describes.
func fieldName(what string) string {
	name, _, _ := strings.Cut(what, ",")
	return name
}

func (f msgpackFields) opName(what string) (msgpackFields, string, error) { return f.str(what) }
func (f msgpackFields) key(what string) (msgpackFields, string, error)    { return f.str(what) }

func (f msgpackFields) str(what string) (msgpackFields, string, error) {
	s, err := mpdec(f).str(fieldName(what))
	return f, s, err
}

func (f msgpackFields) int64(what string) (msgpackFields, int64, error) {
	n, err := mpdec(f).int64(fieldName(what))
	return f, n, err
}

func (f msgpackFields) dots(what string) (msgpackFields, []crdt.Dot, error) {
	ds, err := mpdec(f).dots(fieldName(what))
	return f, ds, err
}

func (f msgpackFields) value() (msgpackFields, json.RawMessage, error) {
	v, err := mpdec(f).value()
	return f, v, err
}

// value reads an op's value: a bin holding JSON text, or a msgpack value
// converted to JSON.
func (m mpdec) value() ([]byte, error) {
	c, err := m.peek()
	if err != nil {
		return nil, err
	}
	if msgpcode.IsBin(c) {
		b, err := m.d.DecodeBytes()
		if err != nil {
			return nil, mpErr("value: %v", err)
		}
		d := jdec{b: b}
		d.ws()
		if err := d.value(0); err != nil {
			return nil, fmt.Errorf("%w: msgpack: the bin value is not JSON: %w", ErrInvalidOp, err)
		}
		d.ws()
		if d.i != len(b) {
			return nil, mpErr("the bin value has trailing data after its JSON")
		}
		return b, nil
	}
	return m.toJSON(nil, 0)
}

// toJSON converts the next msgpack value to JSON, appended to b.
func (m mpdec) toJSON(b []byte, depth int) ([]byte, error) {
	if depth >= maxJSONDepth {
		return nil, mpErr("value nested deeper than %d levels", maxJSONDepth)
	}
	c, err := m.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		_ = m.d.DecodeNil()
		return append(b, "null"...), nil
	case c == msgpcode.True || c == msgpcode.False:
		v, _ := m.d.DecodeBool()
		return strconv.AppendBool(b, v), nil
	case isInt(c):
		n, neg, err := m.integer("value")
		switch {
		case err != nil:
			return nil, err
		case neg:
			return strconv.AppendInt(b, int64(n), 10), nil
		}
		return strconv.AppendUint(b, n, 10), nil
	case c == msgpcode.Float || c == msgpcode.Double:
		bits := 64
		if c == msgpcode.Float {
			bits = 32
		}
		f, err := m.d.DecodeFloat64()
		if err != nil {
			return nil, mpErr("value: %v", err)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, mpErr("value holds %v, which JSON cannot", f)
		}
		return strconv.AppendFloat(b, f, 'g', -1, bits), nil
	case msgpcode.IsString(c):
		s, err := m.str("a string in the value")
		if err != nil {
			return nil, err
		}
		return appendJSONString(b, s), nil
	case isArray(c):
		n, err := m.d.DecodeArrayLen()
		if err != nil {
			return nil, mpErr("value: %v", err)
		}
		b = append(b, '[')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = m.toJSON(b, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case isMap(c):
		n, err := m.d.DecodeMapLen()
		if err != nil {
			return nil, mpErr("value: %v", err)
		}
		b = append(b, '{')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			k, err := m.str("a map key in the value (JSON objects have string keys)")
			if err != nil {
				return nil, err
			}
			b = append(appendJSONString(b, k), ':')
			if b, err = m.toJSON(b, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, mpErr("value holds msgpack code 0x%02x (bin inside a value, ext or timestamp), which has no JSON form", c)
}
