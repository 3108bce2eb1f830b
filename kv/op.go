package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

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
	var allowed int // fields the op may carry beyond op and key
	switch t {
	case TypeLWW:
		switch op.Op {
		case OpSet:
			allowed = fValue
		case OpDelete:
		default:
			return wrongOp(t, op.Op, "set, delete")
		}
	case TypeMVReg:
		if op.Op != OpSet {
			return wrongOp(t, op.Op, "set")
		}
		allowed = fValue | fContext
	case TypeORSet:
		switch op.Op {
		case OpAdd:
			allowed = fElement
		case OpRemove:
			allowed = fElement | fObserved
		default:
			return wrongOp(t, op.Op, "add, remove")
		}
		if err := ValidateKey("element", op.Element); err != nil {
			return err
		}
	case TypeCounter:
		if op.Op != OpIncr {
			return wrongOp(t, op.Op, "incr")
		}
		allowed = fDelta | fWriter
	case TypeMap:
		switch op.Op {
		case OpSet:
			allowed = fField | fValue
		case OpIncr:
			allowed = fField | fDelta | fWriter
		case OpRemove:
			allowed = fField | fObserved
		default:
			return wrongOp(t, op.Op, "set, incr, remove")
		}
		if err := ValidateKey("field", op.Field); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown table type %q", ErrTableType, t)
	}
	if op.Op == OpSet && op.Value == nil {
		return fmt.Errorf("%w: %s on %s table needs a \"value\"", ErrInvalidOp, op.Op, t.article())
	}
	if op.Writer != "" {
		if err := ValidateKey("writer", op.Writer); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		bit     int
		name    string
		present bool
	}{
		{fField, "field", op.Field != ""},
		{fValue, "value", op.Value != nil},
		{fElement, "element", op.Element != ""},
		{fDelta, "delta", op.Delta != nil},
		{fWriter, "writer", op.Writer != ""},
		{fObserved, "observed", op.Observed != nil},
		{fContext, "context", op.Context != nil},
	} {
		if f.present && allowed&f.bit == 0 {
			return fmt.Errorf("%w: %s on %s table takes no %q", ErrTableType, op.Op, t.article(), f.name)
		}
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

// article is "a" or "an" for a table type's name.
func (t Type) article() string {
	switch t {
	case TypeCounter, TypeMap:
		return "a " + string(t)
	}
	return "an " + string(t)
}

func wrongOp(t Type, op, want string) error {
	if op == "" {
		return fmt.Errorf("%w: no \"op\" (%s table takes %s)", ErrInvalidOp, t.article(), want)
	}
	switch op {
	case OpSet, OpDelete, OpAdd, OpRemove, OpIncr:
		return fmt.Errorf("%w: %s is not an op of %s table (it takes %s)", ErrTableType, op, t.article(), want)
	}
	return fmt.Errorf("%w: unknown op %q (%s table takes %s)", ErrInvalidOp, truncate(op, 64), t.article(), want)
}
