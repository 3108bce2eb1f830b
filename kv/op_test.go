package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
)

func TestDecodeOp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Op
	}{
		{`{"op":"set","key":"alice","value":{"age":3}}`, Op{Op: "set", Key: "alice", Value: []byte(`{"age":3}`)}},
		{` { "key" : "k" , "op" : "delete" } `, Op{Op: "delete", Key: "k"}},
		{`{"op":"incr","key":"k","delta":-7,"writer":"w"}`, Op{Op: "incr", Key: "k", Delta: Int64(-7), Writer: "w"}},
		{`{"op":"remove","key":"k","element":"x","observed":[{"index":3,"esk":"kv.t"}]}`,
			Op{Op: "remove", Key: "k", Element: "x", Observed: []crdt.Dot{{ESK: "kv.t", Index: 3}}}},
		{`{"op":"set","key":"k","value":1,"context":[]}`, Op{Op: "set", Key: "k", Value: []byte(`1`), Context: []crdt.Dot{}}},
		{`{"op":"set","key":"\u00e9\ud83d\ude00\n","field":"f","value":"a\"b"}`, Op{Op: "set", Key: "é😀\n", Field: "f", Value: []byte(`"a\"b"`)}},
	} {
		got, err := DecodeOp([]byte(tc.in), "")
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestDecodeOpErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "JSON at byte 0: unexpected end, want an op object '{'"},
		{`[1]`, `JSON at byte 0: want an op object '{', found '['`},
		{`{"op":"set",}`, `JSON at byte 12: want a field name, found '}'`},
		{`{"op":"set","Key":"a"}`, `JSON at byte 12: unknown field "Key"`},
		{`{"op":"set","op":"add"}`, `JSON at byte 12: field "op" appears twice`},
		{`{"op":"set","key":"a","value":}`, `JSON at byte 30: want a value, found '}'`},
		{`{"op":"set","key":"a","value":[1,]}`, `JSON at byte 33: want a value, found ']'`},
		{`{"op":"set","key":"a","value":1} x`, `JSON at byte 33: trailing data after the op object`},
		{`{"op":"set","key":"a","value":"x` + "\n" + `"}`, `control character in a string`},
		{`{"op":"incr","key":"a","delta":2.0}`, `want "delta", an integer, found a number with a fraction or exponent`},
		{`{"op":"incr","key":"a","delta":-}`, `want a digit`},
		{`{"op":"remove","key":"a","observed":[{"esk":"kv.t"}]}`, `lacks "index"`},
		{`{"op":"remove","key":"a","observed":[{"esk":"kv.t","index":-1}]}`, `want "index", a non-negative integer`},
		{`{"op":"remove","key":"a","observed":{"esk":"kv.t","index":1}}`, `want "observed", a list of dots`},
		{`{"op":"set","key":"a","value":"\x"}`, `bad escape '\x'`},
		{`{"op":"set","key":"\ud800x","value":1}`, `lone surrogate`},
	} {
		_, err := DecodeOp([]byte(tc.in), "")
		if err == nil {
			t.Errorf("%s: decoded", tc.in)
			continue
		}
		if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want ErrInvalidOp containing %q", tc.in, err, tc.want)
		}
	}
	if _, err := DecodeOp(make([]byte, transport.DefaultMaxPayload+1), ""); err == nil || !strings.Contains(err.Error(), "the limit is") {
		t.Errorf("oversized op: %v", err)
	}
}

func TestDecodeOpMsgpack(t *testing.T) {
	ops := []Op{
		{Op: "set", Key: "k", Value: []byte(`{"a":[1,2]}`)},
		{Op: "remove", Key: "k", Element: "x", Observed: []crdt.Dot{{ESK: "kv.t", Index: 1 << 40}}},
		{Op: "remove", Key: "k", Field: "f", Observed: []crdt.Dot{}},
		{Op: "incr", Key: "k", Delta: Int64(-1 << 62), Writer: "w"},
	}
	for _, op := range ops {
		data, err := transport.Msgpack.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeOp(data, transport.ContentTypeMsgpack)
		if err != nil || !reflect.DeepEqual(got, op) {
			t.Errorf("%+v came back as %+v, %v", op, got, err)
		}
	}
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"not a map", "\x91\x01", "an op must be a map"},
		{"huge array header", "\x81\xa8observed\xdd\xff\xff\xff\xff", "malformed payload"},
		{"float delta", "\x83\xa2op\xa4incr\xa3key\xa1a\xa5delta\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", `"delta" must be an integer`},
		{"int map key in a value", "\x83\xa2op\xa3set\xa3key\xa1a\xa5value\x81\x01\x02", "JSON objects have string keys"},
		{"bin that is not JSON", "\x83\xa2op\xa3set\xa3key\xa1a\xa5value\xc4\x02{x", "the bin value is not JSON"},
		{"unknown field", "\x81\xa3ttl\x01", `unknown field "ttl"`},
	} {
		_, err := DecodeOp([]byte(tc.in), transport.ContentTypeMsgpack)
		if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidOp containing %q", tc.name, err, tc.want)
		}
	}
}

func TestOpMarshalJSON(t *testing.T) {
	for _, tc := range []struct {
		op   Op
		want string
	}{
		{Op{Op: "set", Key: "a<b", Value: []byte(" { \"x\" : 1 } ")}, `{"op":"set","key":"a\u003cb","value":{"x":1}}`},
		{Op{Op: "remove", Key: "k", Element: "e"}, `{"op":"remove","key":"k","element":"e"}`},
		{Op{Op: "remove", Key: "k", Element: "e", Observed: []crdt.Dot{}}, `{"op":"remove","key":"k","element":"e","observed":[]}`},
		{Op{Op: "incr", Key: "k", Field: "f", Delta: Int64(0)}, `{"op":"incr","key":"k","field":"f","delta":0}`},
	} {
		got, err := tc.op.MarshalJSON()
		if err != nil || string(got) != tc.want {
			t.Errorf("%+v: %s, %v; want %s", tc.op, got, err, tc.want)
		}
	}
	if _, err := (Op{Op: "set", Key: "k", Value: []byte("{")}).MarshalJSON(); !errors.Is(err, ErrInvalidOp) {
		t.Errorf("invalid value: %v", err)
	}
}

func TestCheckOp(t *testing.T) {
	for _, tc := range []struct {
		t    Type
		op   Op
		want error
	}{
		{TypeLWW, Op{Op: "set", Key: "k", Value: []byte("1")}, nil},
		{TypeLWW, Op{Op: "delete", Key: "k"}, nil},
		{TypeLWW, Op{Op: "delete", Key: "k", Value: []byte("1")}, ErrTableType},
		{TypeLWW, Op{Op: "incr", Key: "k"}, ErrTableType},
		{TypeLWW, Op{Key: "k"}, ErrInvalidOp},
		{TypeMVReg, Op{Op: "set", Key: "k", Value: []byte("1"), Context: []crdt.Dot{}}, nil},
		{TypeORSet, Op{Op: "add", Key: "k", Element: "e"}, nil},
		{TypeORSet, Op{Op: "add", Key: "k"}, ErrInvalidOp},
		{TypeCounter, Op{Op: "incr", Key: "k"}, nil},
		{TypeCounter, Op{Op: "incr", Key: "k", Field: "f"}, ErrTableType},
		{TypeMap, Op{Op: "incr", Key: "k", Field: "f", Delta: Int64(2), Writer: "w"}, nil},
		{TypeMap, Op{Op: "remove", Key: "k", Field: "f", Element: "e"}, ErrTableType},
		{TypeMap, Op{Op: "set", Key: "k", Field: "f"}, ErrInvalidOp},
		{TypeMap, Op{Op: "set", Key: "\xff", Field: "f", Value: []byte("1")}, ErrInvalidOp},
	} {
		err := CheckOp(tc.t, tc.op)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s %+v: %v, want %v", tc.t, tc.op, err, tc.want)
		}
	}
}

func TestValidateTable(t *testing.T) {
	for _, name := range []string{"users", "_config", "a-b_c", "UPPER"} {
		if err := ValidateTable(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"", "a.b", "a b", "a*", ">", strings.Repeat("x", 300)} {
		if err := ValidateTable(name); !errors.Is(err, ErrInvalidOp) {
			t.Errorf("%q: %v", name, err)
		}
	}
}

// TestDeepValuesRejected: a value nested deeper than MaxValueDepth is
// rejected the same way from JSON and msgpack, and one at the limit is
// stored, read back and snapshotted with the rest.
func TestDeepValuesRejected(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{Replica: "deep"})
	ctx := testCtx(t)
	must(t)(s.CreateTable(ctx, "docs", TypeLWW))
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, n := range []int{MaxValueDepth + 1, 9999, 10000} {
		_, err := s.Do(ctx, "docs", Op{Op: OpSet, Key: fmt.Sprint("deep", n), Value: json.RawMessage(nested(n))})
		expectErr(t, err, ErrInvalidOp)
		if !strings.Contains(err.Error(), "nested deeper than") {
			t.Fatalf("depth %d: %v", n, err)
		}
	}
	if n, err := l.Count(ctx, "kv.docs"); err != nil || n != 0 {
		t.Fatalf("refused values were written: %d events (%v)", n, err)
	}
	// Written around the store, the fold rejects it visibly.
	if _, err := l.Write(ctx, "kv.docs", []byte(`{"op":"set","key":"raw","value":`+nested(10000)+`}`)); err != nil {
		t.Fatal(err)
	}
	must(t)(s.Do(ctx, "docs", Op{Op: OpSet, Key: "limit", Value: json.RawMessage(nested(MaxValueDepth))}))
	if rej := s.Rejections("docs"); len(rej) != 1 || !strings.Contains(rej[0].Reason, "nested deeper than") {
		t.Fatalf("rejections: %+v", rej)
	}
	must(t)(s.Set(ctx, "docs", "plain", 1))
	if v, err := s.Get("docs", "limit"); err != nil || string(v.Value) != nested(MaxValueDepth) {
		t.Fatalf("the value at the limit reads back as %.40s (%v)", v.Value, err)
	}
	if _, err := s.Snapshot(ctx); err != nil {
		t.Fatalf("snapshot with a value at the limit: %v", err)
	}
	r := open(t, l, Options{Replica: "deep"})
	if r.Restored() == 0 {
		t.Fatal("the snapshot was not restored")
	}
	if v, err := r.Get("docs", "plain"); err != nil || string(v.Value) != "1" {
		t.Fatalf("plain after restore: %s %v", v.Value, err)
	}
}
