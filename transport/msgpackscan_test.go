package transport

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// codecNested returns n nested one-element arrays around nil.
func codecNested(n int) []byte {
	return append(bytes.Repeat([]byte{0x91}, n), 0xc0)
}

type codecHostileInput struct {
	name string
	data []byte
}

// codecHostileMsgpack lists inputs that must be rejected as malformed, most
// of them by the structural scan before any decoding.
func codecHostileMsgpack() []codecHostileInput {
	withTrailing := func() []byte {
		b, err := Msgpack.Marshal(codecHostileTarget{A: []string{"a"}})
		if err != nil {
			panic(err)
		}
		return append(b, 0x00)
	}()
	return []codecHostileInput{
		{"empty", nil},
		{"array32 max elements", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"array16 max elements", []byte{0xdc, 0xff, 0xff}},
		{"array32 in field A", []byte{0x81, 0xa1, 'A', 0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"map32 max entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"map32 in field M", []byte{0x81, 0xa1, 'M', 0xdf, 0x7f, 0xff, 0xff, 0xff}},
		{"map16 half the needed bytes", []byte{0xde, 0x00, 0x02, 0xa1, 'x', 0x01}},
		{"fixmap missing value", []byte{0x82, 0xa1, 'A', 0x90, 0xa1, 'M'}},
		{"str32 max length", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"str32 in array", []byte{0x81, 0xa1, 'A', 0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'}},
		{"str8 truncated", []byte{0xd9, 0x05, 'a', 'b'}},
		{"fixstr truncated", []byte{0xa5, 'a'}},
		{"bin32 max length", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"bin16 truncated", []byte{0xc5, 0x01, 0x00, 0x00}},
		{"ext32 max length", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"fixext16 truncated", []byte{0xd8, 0x01, 0x00}},
		{"timestamp with bad length", []byte{0xd5, 0xff, 0x00, 0x00}},
		{"timestamp64 nanoseconds overflow", []byte{0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00}},
		{"timestamp96 nanoseconds overflow", append([]byte{0xc7, 12, 0xff, 0x3b, 0x9a, 0xca, 0x00}, make([]byte, 8)...)},
		{"nesting 65 deep", codecNested(65)},
		{"nesting 100000 deep", codecNested(100000)},
		{"maps nested 65 deep", append(bytes.Repeat([]byte{0x81, 0xa0}, 65), 0xc0)},
		{"nested arrays each claiming the rest", []byte{0xdd, 0, 0, 0, 10, 0xdd, 0, 0, 0, 10, 0xdd, 0, 0, 0, 5, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}},
		{"reserved 0xc1", []byte{0xc1}},
		{"reserved 0xc1 in array", []byte{0x92, 0xc0, 0xc1}},
		{"truncated uint16", []byte{0xcd, 0x01}},
		{"truncated uint32", []byte{0xce, 0x01, 0x02}},
		{"truncated uint64", []byte{0xcf, 0x00, 0x00}},
		{"truncated int8", []byte{0xd0}},
		{"truncated int64", []byte{0xd3, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
		{"truncated float32", []byte{0xca, 0x00}},
		{"truncated float64", []byte{0xcb, 0x00, 0x00, 0x00}},
		{"truncated array32 header", []byte{0xdd, 0x00, 0x00}},
		{"truncated map16 header", []byte{0xde, 0x00}},
		{"trailing bytes after nil", []byte{0xc0, 0xc0}},
		{"trailing byte after struct", withTrailing},
		{"two top-level maps", []byte{0x80, 0x80}},
	}
}

func TestMsgpackMalformedDecode(t *testing.T) {
	// Structurally valid msgpack that does not fit the target.
	var ev codecTestEvent
	for _, in := range [][]byte{
		{0xa1, 'x'},                        // a string, not a struct
		{0x81, 0xa2, 'i', 'd', 0x92, 1, 2}, // id is an array
		{0x81, 0x01, 0x02},                 // integer key
	} {
		err := Msgpack.Unmarshal(in, &ev)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "msgpack") {
			t.Errorf("Unmarshal(% x) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestMsgpackHostileInputsRejected(t *testing.T) {
	for _, h := range codecHostileMsgpack() {
		t.Run(h.name, func(t *testing.T) {
			var v codecHostileTarget
			err := Msgpack.Unmarshal(h.data, &v)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal = %v, want ErrMalformed", err)
			}
			if v.A != nil || v.M != nil {
				t.Errorf("target written despite the error: %+v", v)
			}
			if err := scanMsgpack(h.data, DefaultMaxDepth); !errors.Is(err, ErrMalformed) {
				t.Errorf("scanMsgpack = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestMsgpackHostileAllocations checks that no hostile input makes a decode
// allocate more than a small constant, whatever lengths it declares.
func TestMsgpackHostileAllocations(t *testing.T) {
	const perCallLimit = 64 << 10
	const runs = 20
	for _, h := range codecHostileMsgpack() {
		var v codecHostileTarget
		_ = Msgpack.Unmarshal(h.data, &v) // warm up caches
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			var v codecHostileTarget
			_ = Msgpack.Unmarshal(h.data, &v)
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per >= perCallLimit {
			t.Errorf("%s: %d bytes allocated per decode, limit %d", h.name, per, perCallLimit)
		}
	}
}

func TestScanMsgpackAcceptsValidEncodings(t *testing.T) {
	ts := []time.Time{
		time.Unix(1, 0),                             // timestamp32
		time.Unix(1700000000, 5),                    // timestamp64
		time.Unix(-1, 999999999),                    // timestamp96
		time.Date(2600, 1, 1, 0, 0, 0, 1, time.UTC), // timestamp96
	}
	values := []any{
		nil, true, false,
		0, 127, 128, 255, 256, 65535, 65536, uint64(math.MaxUint32) + 1, uint64(math.MaxUint64),
		-1, -32, -33, -128, -129, -32768, -32769, int64(math.MinInt32) - 1, int64(math.MinInt64),
		float32(1.5), 2.5, math.Inf(1), math.NaN(),
		"", strings.Repeat("a", 31), strings.Repeat("b", 32), strings.Repeat("c", 255),
		strings.Repeat("d", 256), strings.Repeat("e", 65535), strings.Repeat("f", 65536),
		[]byte{}, make([]byte, 255), make([]byte, 256), make([]byte, 65536),
		[]int{}, make([]int, 15), make([]int, 16), make([]int, 65536),
		map[string]int{}, codecManyCounts(15), codecManyCounts(16), codecManyCounts(65536),
		ts,
		map[string]any{"nested": []any{map[string]any{"x": []any{1, "y", nil}}}},
	}
	for _, ev := range codecSampleEvents() {
		values = append(values, ev)
	}
	for i, v := range values {
		data, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if err := scanMsgpack(data, DefaultMaxDepth); err != nil {
			t.Errorf("value %d (%T): %v", i, v, err)
		}
	}

	// Hand-built forms the encoder above does not produce.
	raw := [][]byte{
		{0xd0, 0x01}, {0xd1, 0, 1}, {0xd2, 0, 0, 0, 1}, {0xd3, 0, 0, 0, 0, 0, 0, 0, 1},
		{0xcc, 1}, {0xcd, 0, 1}, {0xce, 0, 0, 0, 1}, {0xcf, 0, 0, 0, 0, 0, 0, 0, 1},
		{0xca, 0, 0, 0, 0}, {0xcb, 0, 0, 0, 0, 0, 0, 0, 0},
		{0xd9, 0x00}, {0xda, 0, 1, 'x'}, {0xdb, 0, 0, 0, 1, 'x'},
		{0xc4, 0x00}, {0xc5, 0, 1, 'x'}, {0xc6, 0, 0, 0, 1, 'x'},
		{0xdc, 0, 1, 0xc0}, {0xdd, 0, 0, 0, 1, 0xc0},
		{0xde, 0, 1, 0xc0, 0xc0}, {0xdf, 0, 0, 0, 1, 0xc0, 0xc0},
		{0xd4, 0x05, 0xaa},
		{0xd5, 0x05, 0xaa, 0xbb},
		{0xd6, 0x05, 1, 2, 3, 4},
		{0xd7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8},
		append([]byte{0xd8, 0x05}, make([]byte, 16)...),
		{0xc7, 0x00, 0x05},
		{0xc7, 0x03, 0x05, 1, 2, 3},
		{0xc8, 0x00, 0x02, 0x05, 1, 2},
		{0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 1},
		{0xd6, 0xff, 0, 0, 0, 1},                         // timestamp32
		{0xd7, 0xff, 0xee, 0x6b, 0x27, 0xfc, 0, 0, 0, 1}, // timestamp64, 999999999 ns
		append([]byte{0xc7, 12, 0xff, 0x3b, 0x9a, 0xc9, 0xff}, make([]byte, 8)...), // timestamp96
		{0x92, 0x80, 0x90},
		codecNested(DefaultMaxDepth),
	}
	for _, data := range raw {
		if err := scanMsgpack(data, DefaultMaxDepth); err != nil {
			t.Errorf("% x: %v", data, err)
		}
	}
}

func TestScanMsgpackErrors(t *testing.T) {
	tests := []struct {
		data     []byte
		maxDepth int
		want     string
	}{
		{nil, 64, "byte offset 0: empty payload"},
		{[]byte{0x93, 0x01, 0x02, 0xc1}, 64, "byte offset 3: reserved type byte 0xc1"},
		{[]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, 64, "byte offset 0: array32 declares 4294967295 elements but only 0 bytes remain"},
		{[]byte{0x91, 0xdf, 0xff, 0xff, 0xff, 0xff}, 64, "byte offset 1: map32 declares 4294967295 entries"},
		{[]byte{0x92, 0xdb, 0xff, 0xff, 0xff, 0xff, 0xc0}, 64, "byte offset 1: truncated str32: needs 4294967295 bytes after the header, 1 remain"},
		{[]byte{0xc0, 0xc0, 0xc0}, 64, "byte offset 1: 2 trailing byte(s)"},
		{[]byte{0x92, 0xa1, 'x'}, 64, "byte offset 3: unexpected end of data: 1 more object(s) expected"},
		{[]byte{0xcb, 0x00}, 64, "byte offset 0: truncated float64: needs 8 bytes after the header, 1 remain"},
		{[]byte{0xdc, 0x00}, 64, "byte offset 0: truncated array16 header"},
		{codecNested(3), 2, "byte offset 2: fixarray nested 3 deep, the limit is 2"},
		{[]byte{0x91, 0x90}, 1, "byte offset 1: fixarray nested 2 deep"},
		{[]byte{0x90}, 0, "byte offset 0: fixarray nested 1 deep, the limit is 0"},
		{[]byte{0xd4, 0xff, 0x00}, 64, "timestamp extension has a 1 byte body"},
	}
	for _, tt := range tests {
		err := scanMsgpack(tt.data, tt.maxDepth)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("scanMsgpack(% x) = %v, want ErrMalformed", tt.data, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("scanMsgpack(% x) = %q, want it to contain %q", tt.data, err, tt.want)
		}
	}
	// Scalars need no depth.
	if err := scanMsgpack([]byte{0x01}, 0); err != nil {
		t.Errorf("scalar at depth limit 0: %v", err)
	}
	if err := scanMsgpack(codecNested(2), 2); err != nil {
		t.Errorf("nesting at the limit: %v", err)
	}
}

func TestMsgpackDepthLimit(t *testing.T) {
	c := NewMsgpackCodec(0, 2)
	var ok [][]int
	if err := c.Unmarshal([]byte{0x91, 0x91, 0x01}, &ok); err != nil {
		t.Fatalf("depth 2: %v", err)
	}
	var deep [][][]int
	if err := c.Unmarshal([]byte{0x91, 0x91, 0x91, 0x01}, &deep); !errors.Is(err, ErrMalformed) {
		t.Fatalf("depth 3 with limit 2: err = %v, want ErrMalformed", err)
	}
	var raw msgpack.RawMessage
	if err := Msgpack.Unmarshal(codecNested(DefaultMaxDepth+1), &raw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("default limit + 1: err = %v, want ErrMalformed", err)
	}
}
