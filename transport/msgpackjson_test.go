package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/detbus/detbus/internal/allocbound"
)

// mp encodes v with the msgpack library, map keys sorted.
func mp(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestMsgpackJSON: every msgpack type has the JSON form the doc promises.
func TestMsgpackJSON(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"nil", []byte{0xc0}, `null`},
		{"bools", []byte{0x92, 0xc2, 0xc3}, `[false,true]`},
		{"fixints", []byte{0x93, 0x00, 0x7f, 0xff}, `[0,127,-1]`},
		{"negative fixint", []byte{0xe0}, `-32`},
		{"uints", mp(t, []uint64{200, 70000, 5000000000, math.MaxUint64}), `[200,70000,5000000000,18446744073709551615]`},
		{"ints", mp(t, []int64{-100, -30000, -3000000000, math.MinInt64}), `[-100,-30000,-3000000000,-9223372036854775808]`},
		{"int8 explicit", []byte{0xd0, 0x80}, `-128`},
		{"int16 explicit", []byte{0xd1, 0xff, 0xfe}, `-2`},
		{"uint8 explicit", []byte{0xcc, 0xff}, `255`},
		{"float32", []byte{0xca, 0x3f, 0xc0, 0x00, 0x00}, `1.5`},
		{"float64", mp(t, 0.1), `0.1`},
		{"NaN and infinities", mp(t, []float64{math.NaN(), math.Inf(1), math.Inf(-1)}), `["NaN","+Inf","-Inf"]`},
		{"strings", mp(t, []string{"", "a\"b\n", strings.Repeat("x", 40), strings.Repeat("y", 300), strings.Repeat("z", 70000)}),
			`["","a\"b\n","` + strings.Repeat("x", 40) + `","` + strings.Repeat("y", 300) + `","` + strings.Repeat("z", 70000) + `"]`},
		{"bad UTF-8", []byte{0xa2, 0xff, 'a'}, `"\ufffda"`},
		{"bin", mp(t, []byte{0, 1, 2, 255}), `{"$bin":"AAEC/w=="}`},
		{"bin16", append([]byte{0xc5, 0x01, 0x00}, make([]byte, 256)...), `{"$bin":"` + strings.Repeat("A", 340) + `AA=="}`},
		{"ext", []byte{0xd4, 0x05, 0x07}, `{"$ext":5,"$bin":"Bw=="}`},
		{"ext8", []byte{0xc7, 0x03, 0x80, 1, 2, 3}, `{"$ext":-128,"$bin":"AQID"}`},
		{"timestamp32", []byte{0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00}, `"2023-11-14T22:13:20Z"`},
		{"timestamp64", mp(t, ts), `"2024-05-06T07:08:09.123456789Z"`},
		{"timestamp96", mp(t, time.Date(1900, 1, 1, 0, 0, 0, 5, time.UTC)), `"1900-01-01T00:00:00.000000005Z"`},
		{"map in order", []byte{0x82, 0xa1, 'b', 0x01, 0xa1, 'a', 0x02}, `{"b":1,"a":2}`},
		{"map with other keys", []byte{0x83, 0x01, 0xa1, 'x', 0xc3, 0xc0, 0x91, 0x02, 0x03}, `{"1":"x","true":null,"[2]":3}`},
		{"nested", mp(t, map[string]any{"op": "set", "value": map[string]any{"age": 3, "tags": []any{"a", nil}}}), `{"op":"set","value":{"age":3,"tags":["a",null]}}`},
		{"array16 and map16", append(append([]byte{0xdc, 0x00, 0x01}, 0xde, 0x00, 0x01), 0xa1, 'k', 0x90), `[{"k":[]}]`},
	} {
		got, err := MsgpackJSON(tc.data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(got) != tc.want {
			if len(got) > 200 {
				got = got[:200]
			}
			t.Errorf("%s: got %s, want %.200s", tc.name, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not valid JSON: %s", tc.name, got)
		}
	}
}

// TestMsgpackJSONRefuses: what Msgpack refuses to decode, MsgpackJSON
// refuses too, naming the fault.
func TestMsgpackJSONRefuses(t *testing.T) {
	for _, h := range codecHostileMsgpack() {
		if _, err := MsgpackJSON(h.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", h.name, err)
		}
	}
	big := append([]byte{0xc6, 0x00, 0x10, 0x00, 0x01}, make([]byte, 1<<20+1)...)
	if _, err := MsgpackJSON(big); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("a payload over the limit: %v", err)
	}
}

func FuzzMsgpackJSON(f *testing.F) {
	for _, h := range codecHostileMsgpack() {
		f.Add(h.data)
	}
	for _, ev := range codecFuzzSeedEvents() {
		f.Add(mp(f, ev))
	}
	f.Add(mp(f, map[string]any{"t": time.Unix(1, 2), "f": 1.5, "b": []byte("x"), "n": nil}))
	f.Add([]byte{0x83, 0x01, 0xa1, 'x', 0xc3, 0xc0, 0x91, 0x02, 0x03})
	f.Add(bytes.Repeat([]byte{0x91}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out []byte
		var err error
		allocbound.Check(t, allocbound.Linear(len(data), 64), "MsgpackJSON", func() { out, err = MsgpackJSON(data) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("MsgpackJSON(% x): error wraps neither ErrMalformed nor ErrPayloadTooLarge: %v", data, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("MsgpackJSON(% x) = %s: not JSON", data, out)
		}
	})
}
