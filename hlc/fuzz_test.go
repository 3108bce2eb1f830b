package hlc

import (
	"testing"

	"github.com/detbus/detbus/internal/allocbound"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"0000000000000000000.0000000000",
		"1700000000000000000.0000000003",
		"9223372036854775807.4294967295",
		"123.4",
		"",
		"1.2.3",
		"-1.0",
		" 1.2",
		"9223372036854775808.0",
		"0.4294967296",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		allocbound.Check(t, allocbound.Linear(len(s), 4), "Parse", func() { _, _ = Parse(s) })
		ts, err := Parse(s)
		if err != nil {
			if !ts.IsZero() {
				t.Fatalf("Parse(%q) returned %s with error %v", s, ts, err)
			}
			return
		}
		if ts.WallTime < 0 {
			t.Fatalf("Parse(%q) accepted a negative wall time %d", s, ts.WallTime)
		}
		back, err := Parse(ts.String())
		if err != nil || back != ts {
			t.Fatalf("Parse(%q) = %s, but Parse(%q) = %s, %v", s, ts, ts.String(), back, err)
		}
		var u Timestamp
		if err := u.UnmarshalText([]byte(s)); err != nil || u != ts {
			t.Fatalf("UnmarshalText(%q) = %s, %v, want %s", s, u, err, ts)
		}
	})
}
