package hlc

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestCompareLess(t *testing.T) {
	tests := []struct {
		a, b Timestamp
		want int
	}{
		{ts(0, 0), ts(0, 0), 0},
		{ts(1, 0), ts(1, 0), 0},
		{ts(1, 0), ts(2, 0), -1},
		{ts(2, 0), ts(1, 0), 1},
		{ts(1, 1), ts(1, 2), -1},
		{ts(1, 2), ts(1, 1), 1},
		{ts(1, math.MaxUint32), ts(2, 0), -1}, // wall time dominates logical
		{ts(2, 0), ts(1, math.MaxUint32), 1},
		{ts(-1, 5), ts(0, 0), -1},
		{ts(math.MaxInt64, math.MaxUint32), ts(math.MaxInt64, math.MaxUint32), 0},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%s.Compare(%s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := tt.a.Less(tt.b); got != (tt.want < 0) {
			t.Errorf("%s.Less(%s) = %v, want %v", tt.a, tt.b, got, tt.want < 0)
		}
	}
}

func TestIsZeroNextTime(t *testing.T) {
	if !(Timestamp{}).IsZero() || ts(0, 1).IsZero() || ts(1, 0).IsZero() {
		t.Error("IsZero is true only for the zero Timestamp")
	}
	if got := ts(3, 4).Next(); got != ts(3, 5) {
		t.Errorf("Next() = %s, want %s", got, ts(3, 5))
	}
	if got := ts(3, math.MaxUint32).Next(); got != ts(4, 0) {
		t.Errorf("Next() at logical overflow = %s, want %s", got, ts(4, 0))
	}
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	got := FromTime(now)
	if got != ts(now.UnixNano(), 0) {
		t.Errorf("FromTime(%v) = %s", now, got)
	}
	if back := got.Time(); !back.Equal(now) || back.Location() != time.UTC {
		t.Errorf("Time() = %v, want %v in UTC", back, now)
	}
}

func TestStringParseRoundTrip(t *testing.T) {
	tests := []struct {
		ts   Timestamp
		want string
	}{
		{Timestamp{}, "0000000000000000000.0000000000"},
		{ts(1700000000000000000, 3), "1700000000000000000.0000000003"},
		{ts(123, 4), "0000000000000000123.0000000004"},
		{ts(math.MaxInt64, math.MaxUint32), "9223372036854775807.4294967295"},
		{ts(math.MaxInt64, 0), "9223372036854775807.0000000000"},
		{ts(0, math.MaxUint32), "0000000000000000000.4294967295"},
	}
	for _, tt := range tests {
		s := tt.ts.String()
		if s != tt.want {
			t.Errorf("String() = %q, want %q", s, tt.want)
		}
		got, err := Parse(s)
		if err != nil || got != tt.ts {
			t.Errorf("Parse(%q) = %s, %v, want %s", s, got, err, tt.ts)
		}
	}
	unpadded := map[string]Timestamp{
		"123.4":                          ts(123, 4),
		"0.0":                            Timestamp{},
		"00000000000.01":                 ts(0, 1),
		"9223372036854775807.4294967295": ts(math.MaxInt64, math.MaxUint32),
	}
	for s, want := range unpadded {
		if got, err := Parse(s); err != nil || got != want {
			t.Errorf("Parse(%q) = %s, %v, want %s", s, got, err, want)
		}
	}
}

func TestLexicalOrderMatchesCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := func() Timestamp {
		switch r.IntN(3) {
		case 0: // full range
			return ts(r.Int64(), r.Uint32())
		case 1: // small values exercise the zero padding
			return ts(r.Int64N(1000), r.Uint32N(1000))
		default: // realistic wall times
			return ts(1_700_000_000_000_000_000+r.Int64N(1e9), r.Uint32N(20))
		}
	}
	for i := range 10_000 {
		a := random()
		b := random()
		if i%4 == 0 {
			b.WallTime = a.WallTime // force ties on the wall time
		}
		want := a.Compare(b)
		if got := strings.Compare(a.String(), b.String()); got != want {
			t.Fatalf("strings.Compare(%q, %q) = %d, Compare = %d", a, b, got, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	long := strings.Repeat("0", 60) + ".0000" // 65 bytes
	bad := []string{
		"",
		".",
		"123",
		"123.",
		".4",
		"-1.0",
		"1.-1",
		"+1.0",
		"1.+0",
		"1.2.3",
		"1..2",
		" 1.2",
		"1.2 ",
		"1. 2",
		"1\t.2",
		"1.2\n",
		"0x10.0",
		"1e3.0",
		"1_000.0",
		"abc.def",
		"１.２",                           // full-width digits
		"9223372036854775808.0",         // wall overflows int64
		"99999999999999999999.0",        // 20 digits
		"0.4294967296",                  // logical overflows uint32
		"0.99999999999",                 // 11 digits
		long,                            // over 64 bytes
		strings.Repeat("9", 100) + ".0", // far over 64 bytes
		"1.2\x00",
	}
	for _, s := range bad {
		got, err := Parse(s)
		if !errors.Is(err, ErrInvalidTimestamp) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalidTimestamp", s, err)
			continue
		}
		if !got.IsZero() {
			t.Errorf("Parse(%q) returned %s with an error, want zero", s, got)
		}
		if len(err.Error()) > 200 {
			t.Errorf("Parse(%q) error message is %d bytes long", s, len(err.Error()))
		}
	}
	if len(long) != 65 {
		t.Fatalf("long input is %d bytes, want 65", len(long))
	}
	if _, err := Parse(long[1:]); err != nil {
		t.Errorf("Parse of a 64-byte input failed: %v", err)
	}
	_, err := Parse("12a.3")
	if err == nil || !strings.Contains(err.Error(), `"12a.3"`) {
		t.Errorf("error %v does not quote the input", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	type envelope struct {
		At   Timestamp            `json:"at"`
		Seen map[Timestamp]string `json:"seen"`
	}
	in := envelope{
		At:   ts(1700000000000000000, 3),
		Seen: map[Timestamp]string{ts(5, 6): "x"},
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"at":"1700000000000000000.0000000003","seen":{"0000000000000000005.0000000006":"x"}}`
	if string(data) != want {
		t.Fatalf("json.Marshal = %s, want %s", data, want)
	}
	var out envelope
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.At != in.At || out.Seen[ts(5, 6)] != "x" {
		t.Fatalf("round trip = %+v, want %+v", out, in)
	}

	var bad Timestamp
	if err := json.Unmarshal([]byte(`"1.2.3"`), &bad); !errors.Is(err, ErrInvalidTimestamp) {
		t.Errorf("Unmarshal of bad timestamp: err = %v, want ErrInvalidTimestamp", err)
	}
	if _, err := ts(-1, 0).MarshalText(); !errors.Is(err, ErrInvalidTimestamp) {
		t.Errorf("MarshalText of negative wall time: err = %v, want ErrInvalidTimestamp", err)
	}
}
