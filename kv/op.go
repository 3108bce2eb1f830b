package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
)

// DecodeOp decodes one op from an event's payload, with the codec of its
// content type: JSON for "" and "application/json", msgpack for
// "application/msgpack". Payloads longer than [transport.DefaultMaxPayload]
// are refused before decoding. The op's shape is not checked against a
// table type here (see [CheckOp]).
//
// The JSON form is an object with the fields of [Op]'s tags; unknown and
// repeated fields, null for a string, number or list field, a delta that
// is not an integer within int64, invalid UTF-8 and trailing data are
// refused. The msgpack form is a map with the same field names; its
// "value" is either a bin holding JSON text or any other msgpack value
// (nil, bool, integer, finite float, str, array, map with str keys), which
// is converted to JSON.
//
// Errors wrap [ErrInvalidOp] and say what was wrong and, for JSON, at
// which byte. The work and memory a call takes are bounded by a small
// multiple of len(data).
func DecodeOp(data []byte, contentType string) (Op, error) {
	return decodeOpFor(data, contentType, nil)
}

// decodeOpFor is DecodeOp for the fold of an op on table t (see
// decodeJSONOpFor).
func decodeOpFor(data []byte, contentType string, t *table) (Op, error) {
	if len(data) > transport.DefaultMaxPayload {
		return Op{}, fmt.Errorf("%w: the op is %d bytes, the limit is %d", ErrInvalidOp, len(data), transport.DefaultMaxPayload)
	}
	codec, err := transport.CodecFor(contentType)
	if err != nil {
		return Op{}, fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	if codec.ContentType() == transport.ContentTypeJSON {
		return decodeJSONOpFor(data, t)
	}
	var op Op
	if err := codec.Unmarshal(data, &op); err != nil {
		return Op{}, fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	return op, nil
}

// Field bits: the fields of an op's encoded form, to refuse duplicates
// and to say which fields an op takes.
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

// fieldNames names the field bits, by bit position.
var fieldNames = [...]string{"op", "key", "field", "value", "element", "delta", "writer", "observed", "context"}

// opFields lists the fields of an op's encoded form, for errors.
var opFields = "an op has " + strings.Join(fieldNames[:], ", ")

// fieldReader reads the value of one op field and returns itself moved
// past it: jsonFields reads JSON, msgpackFields msgpack. Readers are
// values that readField hands back, not pointers, so that a decoder can
// stay on the stack. what describes the field for errors as the JSON
// decoder words it (`"delta", an integer`).
type fieldReader[R any] interface {
	opName(what string) (R, string, error)
	key(what string) (R, string, error)
	str(what string) (R, string, error)
	int64(what string) (R, int64, error)
	dots(what string) (R, []crdt.Dot, error)
	value() (R, json.RawMessage, error)
}

// readField reads the value of the op field called name into op with r,
// and returns r moved past it and the field's bit: 0, reading nothing,
// if an op has no such field.
func readField[R fieldReader[R]](r R, name string, op *Op) (_ R, bit int, err error) {
	switch name {
	case "op":
		r, op.Op, err = r.opName(`"op", a string`)
		return r, fOp, err
	case "key":
		r, op.Key, err = r.key(`"key", a string`)
		return r, fKey, err
	case "field":
		r, op.Field, err = r.str(`"field", a string`)
		return r, fField, err
	case "element":
		r, op.Element, err = r.str(`"element", a string`)
		return r, fElement, err
	case "writer":
		r, op.Writer, err = r.str(`"writer", a string`)
		return r, fWriter, err
	case "value":
		r, op.Value, err = r.value()
		return r, fValue, err
	case "delta":
		var n int64
		if r, n, err = r.int64(`"delta", an integer`); err == nil {
			op.Delta = &n
		}
		return r, fDelta, err
	case "observed":
		r, op.Observed, err = r.dots(`"observed"`)
		return r, fObserved, err
	case "context":
		r, op.Context, err = r.dots(`"context"`)
		return r, fContext, err
	}
	return r, 0, nil
}

// UnmarshalJSON decodes an op as [DecodeOp] does.
func (op *Op) UnmarshalJSON(data []byte) error {
	o, err := decodeJSONOp(data)
	if err != nil {
		return err
	}
	*op = o
	return nil
}

// MarshalJSON encodes op with its fields in a fixed order, empty ones left
// out, except that an empty non-nil Observed or Context is written as []
// (a nil one means "every dot present", an empty one "none").
func (op Op) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 64+len(op.Value))
	b = append(b, '{')
	str := func(name, v string) {
		if v == "" && name != "op" && name != "key" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = appendJSONString(b, v)
	}
	str("op", op.Op)
	str("key", op.Key)
	str("field", op.Field)
	if op.Value != nil {
		if !json.Valid(op.Value) {
			return nil, fmt.Errorf("%w: value of %s %q is not valid JSON", ErrInvalidOp, op.Op, op.Key)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, op.Value); err != nil {
			return nil, err
		}
		b = append(b, `,"value":`...)
		b = append(b, buf.Bytes()...)
	}
	str("element", op.Element)
	if op.Delta != nil {
		b = strconv.AppendInt(append(b, `,"delta":`...), *op.Delta, 10)
	}
	str("writer", op.Writer)
	dots := func(name string, ds []crdt.Dot) {
		if ds == nil {
			return
		}
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":[`...)
		for i, d := range ds {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"esk":`...)
			b = appendJSONString(b, d.ESK)
			b = strconv.AppendUint(append(b, `,"index":`...), d.Index, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	dots("observed", op.Observed)
	dots("context", op.Context)
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// CheckOp reports whether op is a well-formed op for a table of type t:
// an op name the type has, a valid key, the fields that op takes and no
// others. The fold applies the same check, so an op that passes here
// is rejected later only if the table's type differs by then or a CRDT
// refuses it. Errors wrap [ErrInvalidOp] (bad key, missing field,
// unknown op) or [ErrTableType] (an op or field the type does not have).
func CheckOp(t Type, op Op) error {
	if err := ValidateKey("key", op.Key); err != nil {
		return err
	}
	ops := t.ops()
	if ops == nil {
		return fmt.Errorf("%w: unknown table type %q", ErrTableType, t)
	}
	i := slices.IndexFunc(ops, func(o opSpec) bool { return o.op == op.Op })
	if i < 0 {
		return wrongOp(t, op.Op, ops)
	}
	allowed := ops[i].fields
	if allowed&fElement != 0 {
		if err := ValidateKey("element", op.Element); err != nil {
			return err
		}
	}
	if allowed&fField != 0 {
		if err := ValidateKey("field", op.Field); err != nil {
			return err
		}
	}
	if op.Op == OpSet && op.Value == nil {
		return fmt.Errorf("%w: %s on %s table needs a \"value\"", ErrInvalidOp, op.Op, t.article())
	}
	if op.Value != nil {
		d := jdec{b: op.Value}
		if err := d.value(0); err != nil {
			return fmt.Errorf("%w: the value: %v", ErrInvalidOp, err)
		}
	}
	if op.Writer != "" {
		if err := ValidateKey("writer", op.Writer); err != nil {
			return err
		}
	}
	if extra := op.present() &^ allowed; extra != 0 {
		name := fieldNames[bits.TrailingZeros(uint(extra))]
		return fmt.Errorf("%w: %s on %s table takes no %q", ErrTableType, op.Op, t.article(), name)
	}
	for _, ds := range [][]crdt.Dot{op.Observed, op.Context} {
		for _, d := range ds {
			if d.ESK == "" {
				return fmt.Errorf("%w: a dot with an empty esk", ErrInvalidOp)
			}
		}
	}
	return nil
}

// opSpec is an op of a table type: its name and the fields it takes
// beyond op and key.
type opSpec struct {
	op     string
	fields int
}

// The ops of each table type.
var (
	lwwOps     = []opSpec{{OpSet, fValue}, {OpDelete, 0}}
	mvregOps   = []opSpec{{OpSet, fValue | fContext}}
	orsetOps   = []opSpec{{OpAdd, fElement}, {OpRemove, fElement | fObserved}}
	counterOps = []opSpec{{OpIncr, fDelta | fWriter}}
	mapOps     = []opSpec{{OpSet, fField | fValue}, {OpIncr, fField | fDelta | fWriter}, {OpRemove, fField | fObserved}}
)

// ops returns the ops of table type t, nil for an unknown type.
func (t Type) ops() []opSpec {
	switch t {
	case TypeLWW:
		return lwwOps
	case TypeMVReg:
		return mvregOps
	case TypeORSet:
		return orsetOps
	case TypeCounter:
		return counterOps
	case TypeMap:
		return mapOps
	}
	return nil
}

// present returns the bits of the fields op carries beyond op and key.
func (op Op) present() int {
	var f int
	for _, x := range []struct {
		bit int
		set bool
	}{
		{fField, op.Field != ""},
		{fValue, op.Value != nil},
		{fElement, op.Element != ""},
		{fDelta, op.Delta != nil},
		{fWriter, op.Writer != ""},
		{fObserved, op.Observed != nil},
		{fContext, op.Context != nil},
	} {
		if x.set {
			f |= x.bit
		}
	}
	return f
}

// article is "a" or "an" for a table type's name.
func (t Type) article() string {
	switch t {
	case TypeCounter, TypeMap:
		return "a " + string(t)
	}
	return "an " + string(t)
}

func wrongOp(t Type, op string, ops []opSpec) error {
	names := make([]string, len(ops))
	for i, o := range ops {
		names[i] = o.op
	}
	want := strings.Join(names, ", ")
	if op == "" {
		return fmt.Errorf("%w: no \"op\" (%s table takes %s)", ErrInvalidOp, t.article(), want)
	}
	switch op {
	case OpSet, OpDelete, OpAdd, OpRemove, OpIncr:
		return fmt.Errorf("%w: %s is not an op of %s table (it takes %s)", ErrTableType, op, t.article(), want)
	}
	return fmt.Errorf("%w: unknown op %q (%s table takes %s)", ErrInvalidOp, truncate(op, 64), t.article(), want)
}
