package transport

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// codecFuzzAllocLimit is the most a decode of data may allocate: a
// constant factor per input byte plus slack for one-time caches.
func codecFuzzAllocLimit(data []byte) uint64 {
	return 64*uint64(len(data)) + 1<<20
}

// codecDecodeMeasured decodes data into a fresh codecTestEvent and reports
// the bytes allocated meanwhile.
func codecDecodeMeasured(c Codec, data []byte) (codecTestEvent, uint64, error) {
	var before, after runtime.MemStats
	var v codecTestEvent
	runtime.ReadMemStats(&before)
	err := c.Unmarshal(data, &v)
	runtime.ReadMemStats(&after)
	return v, after.TotalAlloc - before.TotalAlloc, err
}

// codecFuzzDecode is the body shared by the decode fuzzers: decoding never
// panics, allocates a bounded amount, fails only with the package's errors,
// and what decodes survives a re-encode and decode unchanged.
func codecFuzzDecode(t *testing.T, c Codec, data []byte) {
	v1, alloc, err := codecDecodeMeasured(c, data)
	if limit := codecFuzzAllocLimit(data); alloc > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes, limit %d", len(data), alloc, limit)
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPayloadTooLarge) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		return
	}
	again, err := c.Marshal(v1)
	if errors.Is(err, ErrPayloadTooLarge) {
		return // the canonical encoding can be longer than the input
	}
	if err != nil {
		t.Fatalf("re-encoding a decoded value: %v", err)
	}
	var v2 codecTestEvent
	if err := c.Unmarshal(again, &v2); err != nil {
		t.Fatalf("decoding a re-encoded value: %v\nencoding: % x", err, again)
	}
	if !reflect.DeepEqual(v1, v2) && !codecEqualNaN(reflect.ValueOf(v1), reflect.ValueOf(v2)) {
		t.Fatalf("value changed by a re-encode:\nfirst:  %+v\nsecond: %+v", v1, v2)
	}
}

// codecEqualNaN is reflect.DeepEqual for the types in codecTestEvent,
// except that NaN equals NaN (msgpack can carry NaN).
func codecEqualNaN(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || (math.IsNaN(x) && math.IsNaN(y))
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return codecEqualNaN(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !codecEqualNaN(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !codecEqualNaN(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !codecEqualNaN(it.Value(), bv) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}

// codecFuzzSeedEvents are the sample events small enough to mutate
// quickly, plus one with array16 and map16 headers.
func codecFuzzSeedEvents() []codecTestEvent {
	return append(codecSampleEvents()[:2], codecTestEvent{
		Items:  make([]codecTestInner, 16),
		Counts: codecManyCounts(16),
	})
}

func FuzzMsgpackDecode(f *testing.F) {
	for _, ev := range codecFuzzSeedEvents() {
		data, err := Msgpack.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		// The same value in the library's default encoding (Go field
		// names, no sorted keys), which decodes only partly.
		if data, err := msgpack.Marshal(ev); err == nil {
			f.Add(data)
		}
	}
	for _, h := range codecHostileMsgpack() {
		f.Add(h.data)
	}
	f.Add([]byte{0x81, 0xa5, 'i', 't', 'e', 'm', 's', 0x93, 0xc0, 0xc0, 0x80})
	f.Add([]byte{0x81, 0xa6, 'm', 'a', 't', 'r', 'i', 'x', 0x92, 0x90, 0xc0})
	f.Add([]byte{0x81, 0xa5, 'r', 'a', 't', 'i', 'o', 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}) // NaN
	f.Add([]byte{0x81, 0xa6, 'p', 'a', 'r', 'e', 'n', 't', 0x80})

	f.Fuzz(func(t *testing.T, data []byte) {
		codecFuzzDecode(t, Msgpack, data)
	})
}

func FuzzJSONDecode(f *testing.F) {
	for _, ev := range codecFuzzSeedEvents() {
		data, err := JSON.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		``,
		`null`,
		`{}`,
		`{"id":"a"} {"id":"b"}`,
		`{"id":"a"}x`,
		`{"items":[null,null,{}],"matrix":[[],null,[1]]}`,
		`{"labels":{"a":"1"},"labels":{"b":"2"}}`,
		`{"ID":"case","SEQ":1}`,
		`{"blob":"AAEC/w=="}`,
		`{"small":128}`,
		`{"ratio":1e400}`,
		`{"id":"\ud800"}`,
		"{\"id\":\"\xff\xfe\"}",
		strings.Repeat("[", 10001), // deeper than encoding/json allows
		`{"parent":{"tags":["a"]},"parent":{"name":"b"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		codecFuzzDecode(t, JSON, data)
	})
}

func FuzzScanMsgpack(f *testing.F) {
	for _, h := range codecHostileMsgpack() {
		f.Add(h.data, "s", int64(-1), uint64(1), 0.5, []byte{1})
	}
	for _, ev := range codecFuzzSeedEvents() {
		data, err := Msgpack.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "key", int64(math.MinInt64), uint64(math.MaxUint64), math.Inf(-1), []byte{})
	}
	f.Add([]byte{0xd7, 0xff, 0xee, 0x6b, 0x27, 0xfc, 0, 0, 0, 1}, strings.Repeat("x", 300), int64(1<<40), uint64(70000), math.NaN(), bytes.Repeat([]byte{7}, 70))

	f.Fuzz(func(t *testing.T, data []byte, s string, i int64, u uint64, x float64, b []byte) {
		// Any input: no panic, and only ErrMalformed.
		for _, depth := range []int{-1, 0, 1, 2, DefaultMaxDepth} {
			if err := scanMsgpack(data, depth); err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("scanMsgpack(depth %d): error does not wrap ErrMalformed: %v", depth, err)
			}
		}
		// What the scanner accepts, the library can walk to the end.
		if scanMsgpack(data, DefaultMaxDepth) == nil {
			r := bytes.NewReader(data)
			dec := msgpack.NewDecoder(r)
			if err := dec.Skip(); err != nil {
				t.Fatalf("scanner accepted % x, msgpack Skip failed: %v", data, err)
			}
			if r.Len() != 0 {
				t.Fatalf("scanner accepted % x, msgpack Skip left %d bytes", data, r.Len())
			}
		}

		// Every encoding of the test struct passes the scanner.
		ev := codecTestEvent{
			ID:     s,
			Seq:    u,
			Delta:  i,
			Small:  int8(i),
			Ratio:  x,
			OK:     i%2 == 0,
			Blob:   b,
			Labels: map[string]string{s: string(b)},
			Counts: map[string]int{s: int(i), string(b): int(u)},
			Items:  []codecTestInner{{Name: s, Tags: strings.Split(s, ","), Score: x}},
			Groups: map[string][]codecTestInner{s: {{Name: string(b)}}, "": nil},
			Parent: &codecTestInner{Tags: []string{}},
			Note:   s,
		}
		for _, c := range b {
			ev.Matrix = append(ev.Matrix, make([]int32, int(c)%20))
			ev.Items = append(ev.Items, codecTestInner{Score: float64(c) * x})
		}
		for _, enc := range []func(any) ([]byte, error){msgpack.Marshal, Msgpack.Marshal} {
			data, err := enc(ev)
			if errors.Is(err, ErrPayloadTooLarge) {
				continue
			}
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if err := scanMsgpack(data, DefaultMaxDepth); err != nil {
				t.Fatalf("scanner rejects an encoding of the test struct: %v\n% x", err, data)
			}
		}
	})
}
