package transport

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

type codecTestInner struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Score float64  `json:"score"`
}

// codecTestEvent has no omitempty on slices or maps, so that an empty but
// non-nil value survives a round trip through either codec unchanged.
type codecTestEvent struct {
	ID      string                      `json:"id"`
	Seq     uint64                      `json:"seq"`
	Delta   int64                       `json:"delta"`
	Small   int8                        `json:"small"`
	Ratio   float64                     `json:"ratio"`
	OK      bool                        `json:"ok"`
	Blob    []byte                      `json:"blob"`
	Labels  map[string]string           `json:"labels"`
	Counts  map[string]int              `json:"counts"`
	Items   []codecTestInner            `json:"items"`
	Matrix  [][]int32                   `json:"matrix"`
	Groups  map[string][]codecTestInner `json:"groups"`
	Parent  *codecTestInner             `json:"parent"`
	Skipped string                      `json:"-"`
	Note    string                      `json:"note,omitempty"`
}

// codecHostileTarget is the target of the hostile-input tests.
type codecHostileTarget struct {
	A []string
	M map[string]int
}

func codecSampleEvents() []codecTestEvent {
	return []codecTestEvent{
		{},
		{
			ID:     "order-1",
			Seq:    math.MaxUint64,
			Delta:  math.MinInt64,
			Small:  -128,
			Ratio:  -0.125,
			OK:     true,
			Blob:   []byte{0, 1, 2, 0xff},
			Labels: map[string]string{"region": "eu", "tier": "gold", "": "empty key"},
			Counts: map[string]int{"a": 1, "b": -2, "c": math.MaxInt32 + 1},
			Items: []codecTestInner{
				{Name: "x", Tags: []string{"t1", "t2"}, Score: 1.5},
				{Name: "y", Tags: []string{}, Score: math.MaxFloat64},
				{},
			},
			Matrix: [][]int32{{1, 2, 3}, {}, nil, {math.MinInt32, math.MaxInt32}},
			Groups: map[string][]codecTestInner{
				"g1": {{Name: "n", Tags: []string{"日本語", ""}}},
				"g2": {},
				"g3": nil,
			},
			Parent: &codecTestInner{Name: "parent", Score: math.SmallestNonzeroFloat64},
			Note:   "note",
		},
		{
			ID:     strings.Repeat("s", 70000), // str32 / long JSON string
			Blob:   bytes.Repeat([]byte{0xab}, 300),
			Labels: map[string]string{},
			Counts: map[string]int{},
			Items:  []codecTestInner{},
			Matrix: [][]int32{},
			Groups: map[string][]codecTestInner{},
		},
		{
			Items:  make([]codecTestInner, 20), // array16
			Matrix: [][]int32{make([]int32, 70000)},
			Counts: codecManyCounts(20), // map16
			Parent: &codecTestInner{Tags: []string{"only"}},
		},
	}
}

func codecManyCounts(n int) map[string]int {
	m := make(map[string]int, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = i * 1000
	}
	return m
}

func codecCodecs() []Codec { return []Codec{JSON, Msgpack} }

func TestCodecContentTypes(t *testing.T) {
	if got := JSON.ContentType(); got != "application/json" {
		t.Errorf("JSON.ContentType() = %q", got)
	}
	if got := Msgpack.ContentType(); got != "application/msgpack" {
		t.Errorf("Msgpack.ContentType() = %q", got)
	}
	if got := NewJSONCodec(10).ContentType(); got != "application/json" {
		t.Errorf("NewJSONCodec(10).ContentType() = %q", got)
	}
	if got := NewMsgpackCodec(10, 2).ContentType(); got != "application/msgpack" {
		t.Errorf("NewMsgpackCodec(10, 2).ContentType() = %q", got)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, c := range codecCodecs() {
		for i, in := range codecSampleEvents() {
			t.Run(fmt.Sprintf("%s/%d", c.ContentType(), i), func(t *testing.T) {
				in.Skipped = "never encoded"
				data, err := c.Marshal(in)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				var out codecTestEvent
				if err := c.Unmarshal(data, &out); err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				in.Skipped = ""
				if !reflect.DeepEqual(in, out) {
					t.Fatalf("round trip changed the value:\n in: %+v\nout: %+v", in, out)
				}
				// A pointer to a pointer to a concrete type is a fine target.
				var pp *codecTestEvent
				if err := c.Unmarshal(data, &pp); err != nil {
					t.Fatalf("Unmarshal into **T: %v", err)
				}
				if !reflect.DeepEqual(in, *pp) {
					t.Fatalf("round trip through **T changed the value")
				}
			})
		}
	}
}

func TestCodecScalarsAndTime(t *testing.T) {
	now := time.Date(2024, 2, 29, 12, 30, 45, 123456789, time.UTC)
	for _, c := range codecCodecs() {
		t.Run(c.ContentType(), func(t *testing.T) {
			data, err := c.Marshal(now)
			if err != nil {
				t.Fatal(err)
			}
			var got time.Time
			if err := c.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(now) {
				t.Fatalf("time: got %v, want %v", got, now)
			}
			data, err = c.Marshal("hello")
			if err != nil {
				t.Fatal(err)
			}
			var s string
			if err := c.Unmarshal(data, &s); err != nil || s != "hello" {
				t.Fatalf("string: got %q, %v", s, err)
			}
		})
	}
}

// TestMsgpackUsesJSONNames checks that struct fields are named by their
// json tags in msgpack too, and that json:"-" fields are skipped.
func TestMsgpackUsesJSONNames(t *testing.T) {
	data, err := Msgpack.Marshal(codecTestEvent{ID: "x", Skipped: "secret", Note: ""})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m["id"] != "x" {
		t.Errorf("field id: got %v in %v", m["id"], m)
	}
	for _, k := range []string{"ID", "Skipped", "note"} {
		if _, ok := m[k]; ok {
			t.Errorf("unexpected key %q in %v", k, m)
		}
	}

	type tagged struct {
		A int `msgpack:"m" json:"j"`
		B int `json:"b"`
	}
	data, err = Msgpack.Marshal(tagged{A: 1, B: 2})
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	if err := msgpack.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["m"] == nil || m["b"] == nil {
		t.Errorf("msgpack tag should win over json tag: got %v", m)
	}
}

func TestMsgpackMarshalSortsMapKeys(t *testing.T) {
	in := map[string]string{}
	for i := range 50 {
		in[fmt.Sprintf("key%02d", i)] = "v"
	}
	first, err := Msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := Msgpack.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatal("encoding of the same map differs between calls")
		}
	}
}

func TestCodecFor(t *testing.T) {
	tests := []struct {
		contentType string
		want        Codec
	}{
		{"", JSON},
		{"  ", JSON},
		{"application/json", JSON},
		{"Application/JSON", JSON},
		{"application/json; charset=utf-8", JSON},
		{"application/msgpack", Msgpack},
		{" application/msgpack ", Msgpack},
		{"APPLICATION/MSGPACK", Msgpack},
		{"text/plain", nil},
		{"application/x-msgpack", nil},
		{"application/jsonx", nil},
		{"json", nil},
		{"application/json;;", nil},
	}
	for _, tt := range tests {
		c, err := CodecFor(tt.contentType)
		if tt.want == nil {
			if !errors.Is(err, ErrUnknownContentType) {
				t.Errorf("CodecFor(%q) error = %v, want ErrUnknownContentType", tt.contentType, err)
			} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.contentType)) {
				t.Errorf("CodecFor(%q) error %q does not name the content type", tt.contentType, err)
			}
			if c != nil {
				t.Errorf("CodecFor(%q) returned a codec with an error", tt.contentType)
			}
			continue
		}
		if err != nil {
			t.Errorf("CodecFor(%q): %v", tt.contentType, err)
			continue
		}
		if c != tt.want {
			t.Errorf("CodecFor(%q) = %s codec, want %s", tt.contentType, c.ContentType(), tt.want.ContentType())
		}
	}
	for _, c := range codecCodecs() {
		got, err := CodecFor(c.ContentType())
		if err != nil || got != c {
			t.Errorf("CodecFor(%q) = %v, %v", c.ContentType(), got, err)
		}
	}
}

func TestCodecPayloadLimit(t *testing.T) {
	// A valid string payload of exactly DefaultMaxPayload bytes decodes.
	jsonAtLimit := []byte(`"` + strings.Repeat("a", DefaultMaxPayload-2) + `"`)
	msgpackAtLimit := append([]byte{0xdb, 0, 0, 0, 0}, bytes.Repeat([]byte{'a'}, DefaultMaxPayload-5)...)
	binary.BigEndian.PutUint32(msgpackAtLimit[1:], DefaultMaxPayload-5)

	for _, tc := range []struct {
		c       Codec
		atLimit []byte
	}{{JSON, jsonAtLimit}, {Msgpack, msgpackAtLimit}} {
		t.Run(tc.c.ContentType(), func(t *testing.T) {
			var s string
			if err := tc.c.Unmarshal(tc.atLimit, &s); err != nil {
				t.Fatalf("payload of exactly the limit: %v", err)
			}
			over := append(append([]byte(nil), tc.atLimit...), ' ')
			err := tc.c.Unmarshal(over, &s)
			if !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("payload over the limit: err = %v, want ErrPayloadTooLarge", err)
			}
			want := fmt.Sprintf("%d bytes, the limit is %d bytes", DefaultMaxPayload+1, DefaultMaxPayload)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not state size and limit", err)
			}
			// The size is checked before the target.
			if err := tc.c.Unmarshal(over, nil); !errors.Is(err, ErrPayloadTooLarge) {
				t.Errorf("oversized payload with a nil target: %v", err)
			}
		})
	}

	small := []Codec{NewJSONCodec(10), NewMsgpackCodec(10, 0)}
	for _, c := range small {
		t.Run("custom/"+c.ContentType(), func(t *testing.T) {
			var s string
			ok, err := c.Marshal("12345678") // 10 bytes in JSON, 9 in msgpack
			if err != nil {
				t.Fatalf("Marshal within the limit: %v", err)
			}
			if err := c.Unmarshal(ok, &s); err != nil || s != "12345678" {
				t.Fatalf("Unmarshal within the limit: %q, %v", s, err)
			}
			if _, err := c.Marshal("123456789012"); !errors.Is(err, ErrPayloadTooLarge) {
				t.Errorf("Marshal over the limit: err = %v, want ErrPayloadTooLarge", err)
			}
			if err := c.Unmarshal(make([]byte, 11), &s); !errors.Is(err, ErrPayloadTooLarge) {
				t.Errorf("Unmarshal over the limit: err = %v, want ErrPayloadTooLarge", err)
			}
		})
	}

	// Zero and negative limits select the defaults.
	for _, c := range []Codec{NewJSONCodec(0), NewJSONCodec(-1)} {
		var s string
		if err := c.Unmarshal(jsonAtLimit, &s); err != nil {
			t.Errorf("default JSON limit: %v", err)
		}
	}
	for _, c := range []Codec{NewMsgpackCodec(0, 0), NewMsgpackCodec(-1, -1)} {
		var s string
		if err := c.Unmarshal(msgpackAtLimit, &s); err != nil {
			t.Errorf("default msgpack limit: %v", err)
		}
		var raw msgpack.RawMessage
		if err := c.Unmarshal(codecNested(DefaultMaxDepth), &raw); err != nil {
			t.Errorf("default msgpack depth: %v", err)
		}
	}
}

func TestCodecDecodeTarget(t *testing.T) {
	type iface interface{ M() }
	var (
		anyVal    any
		ifaceVal  iface
		anyPtr    *any
		nilStruct *codecTestEvent
		event     codecTestEvent
	)
	targets := []struct {
		name string
		v    any
	}{
		{"nil", nil},
		{"non-pointer struct", event},
		{"non-pointer map", map[string]int{}},
		{"nil pointer", nilStruct},
		{"*any", &anyVal},
		{"*interface{}", (*interface{})(&anyVal)},
		{"**any", &anyPtr},
		{"*iface", &ifaceVal},
	}
	inputs := map[string][]byte{}
	for _, c := range codecCodecs() {
		data, err := c.Marshal(map[string]int{"a": 1})
		if err != nil {
			t.Fatal(err)
		}
		inputs[c.ContentType()] = data
	}
	for _, c := range codecCodecs() {
		for _, tt := range targets {
			err := c.Unmarshal(inputs[c.ContentType()], tt.v)
			if !errors.Is(err, ErrDecodeTarget) {
				t.Errorf("%s: Unmarshal into %s: err = %v, want ErrDecodeTarget", c.ContentType(), tt.name, err)
			}
		}
		if anyVal != nil || anyPtr != nil {
			t.Fatalf("%s: the interface target was written", c.ContentType())
		}
	}
}

func TestJSONTrailingData(t *testing.T) {
	var ev codecTestEvent
	for _, in := range []string{
		`{"id":"a"} {"id":"b"}`,
		`{"id":"a"}x`,
		`{"id":"a"}]`,
		`{"id":"a"}` + "\n\x00",
		`{"id":"a"} // comment`,
	} {
		err := JSON.Unmarshal([]byte(in), &ev)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing data") {
			t.Errorf("Unmarshal(%q) = %v, want a trailing-data ErrMalformed", in, err)
		}
	}
	var n int
	if err := JSON.Unmarshal([]byte("123 4"), &n); !errors.Is(err, ErrMalformed) {
		t.Errorf("Unmarshal(\"123 4\") = %v, want ErrMalformed", err)
	}
	// Surrounding whitespace is not trailing data.
	if err := JSON.Unmarshal([]byte(" \t{\"id\":\"a\"}\r\n \n"), &ev); err != nil || ev.ID != "a" {
		t.Errorf("whitespace around the value: %v", err)
	}
}

func TestJSONMalformed(t *testing.T) {
	var ev codecTestEvent
	tests := []struct {
		in     string
		target any // errors.As target for the underlying error, or nil
	}{
		{``, nil},
		{`   `, nil},
		{`{`, nil},
		{`{"id":}`, new(*json.SyntaxError)},
		{`{"id":1}`, new(*json.UnmarshalTypeError)},
		{`{"small":1000}`, new(*json.UnmarshalTypeError)},
		{`{"seq":-1}`, new(*json.UnmarshalTypeError)},
		{`{"blob":"!!"}`, nil},
		{`[1,2]`, new(*json.UnmarshalTypeError)},
		{strings.Repeat("[", 20000) + strings.Repeat("]", 20000), nil},
	}
	for _, tt := range tests {
		err := JSON.Unmarshal([]byte(tt.in), &ev)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Unmarshal(%.40q) = %v, want ErrMalformed", tt.in, err)
			continue
		}
		if tt.target != nil && !errors.As(err, tt.target) {
			t.Errorf("Unmarshal(%.40q) = %v, underlying %T not reachable", tt.in, err, tt.target)
		}
	}
}

func TestCodecConcurrentUse(t *testing.T) {
	events := codecSampleEvents()[:2]
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				c := codecCodecs()[(g+i)%2]
				in := events[i%len(events)]
				data, err := c.Marshal(in)
				if err != nil {
					errs <- err
					return
				}
				var out codecTestEvent
				if err := c.Unmarshal(data, &out); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(in, out) {
					errs <- fmt.Errorf("%s: round trip mismatch", c.ContentType())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
