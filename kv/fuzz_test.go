package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/detbus/detbus/internal/allocbound"
	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
)

// refOp is an op as encoding/json reads it, the oracle for the JSON
// decoder.
type refOp struct {
	Op       *string         `json:"op"`
	Key      *string         `json:"key"`
	Field    *string         `json:"field"`
	Value    json.RawMessage `json:"value"`
	Element  *string         `json:"element"`
	Delta    *int64          `json:"delta"`
	Writer   *string         `json:"writer"`
	Observed *[]refDot       `json:"observed"`
	Context  *[]refDot       `json:"context"`
}

type refDot struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
}

func (r refOp) op() Op {
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	dots := func(p *[]refDot) []crdt.Dot {
		if p == nil {
			return nil
		}
		out := []crdt.Dot{}
		for _, d := range *p {
			out = append(out, crdt.Dot{ESK: d.ESK, Index: d.Index})
		}
		return out
	}
	return Op{Op: s(r.Op), Key: s(r.Key), Field: s(r.Field), Value: r.Value, Element: s(r.Element),
		Delta: r.Delta, Writer: s(r.Writer), Observed: dots(r.Observed), Context: dots(r.Context)}
}

func compactOp(op Op) Op {
	if op.Value != nil {
		var b bytes.Buffer
		if json.Compact(&b, op.Value) == nil {
			op.Value = b.Bytes()
		}
	}
	return op
}

// FuzzDecodeOp checks that the op decoder never panics, allocates at most
// a small multiple of its input, agrees with encoding/json on every JSON
// op it accepts, and that every op it accepts survives encoding and
// decoding again in both codecs.
func FuzzDecodeOp(f *testing.F) {
	for _, seed := range []string{
		`{"op":"set","key":"alice","value":{"age":3}}`,
		`{"op":"delete","key":"alice"}`,
		`{"op":"add","key":"k","element":"x"}`,
		`{"op":"remove","key":"k","element":"x","observed":[{"esk":"kv.t","index":3}]}`,
		`{"op":"incr","key":"k","delta":-5,"writer":"w"}`,
		`{"op":"set","key":"k","field":"f","value":[1,2.5e3,"\u00e9\ud83d\ude00",true,null]}`,
		`{"op":"set","key":"k","value":"x","context":[]}`,
		`{"op":"set","key":"k\"\\\/\b\f\n\r\t","value":1}`,
		`{"op":"set","key":"a","value":1,"op":"set"}`,
		`{"op":"incr","key":"k","delta":1e3}`,
		` {"op":"set","key":"a","value":{} } `,
		"\x83\xa2op\xa3set\xa3key\xa1a\xa5value\x81\xa1b\x92\x01\xc3",
	} {
		f.Add([]byte(seed), seed[0] == '\x83')
	}
	f.Fuzz(func(t *testing.T, data []byte, msgpack bool) {
		ct := ""
		if msgpack {
			ct = transport.ContentTypeMsgpack
		}
		var op Op
		var err error
		allocbound.Check(t, allocbound.Linear(len(data), 16), fmt.Sprintf("DecodeOp of %d bytes", len(data)), func() {
			op, err = DecodeOp(data, ct)
		})
		if err != nil {
			return
		}
		if !msgpack {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			var ref refOp
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("accepted %q, encoding/json refuses it: %v", data, err)
			}
			if want := ref.op(); !reflect.DeepEqual(op, want) {
				t.Fatalf("%q decoded as %+v, encoding/json reads %+v", data, op, want)
			}
		}
		if op.Value != nil && !json.Valid(op.Value) {
			t.Fatalf("%q decoded with invalid JSON value %q", data, op.Value)
		}
		want := compactOp(op)
		j, err := op.MarshalJSON()
		if err != nil {
			t.Fatalf("encode %+v: %v", op, err)
		}
		back, err := DecodeOp(j, "")
		if err != nil || !reflect.DeepEqual(compactOp(back), want) {
			t.Fatalf("JSON round trip of %+v: %s gives %+v, %v", op, j, back, err)
		}
		m, err := transport.Msgpack.Marshal(op)
		if err != nil {
			t.Fatalf("encode msgpack %+v: %v", op, err)
		}
		back, err = DecodeOp(m, transport.ContentTypeMsgpack)
		if err != nil || !reflect.DeepEqual(compactOp(back), want) {
			t.Fatalf("msgpack round trip of %+v gives %+v, %v", op, back, err)
		}
	})
}
