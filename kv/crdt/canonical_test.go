package crdt

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// slowCanonical is canonicalValue without its fast path.
func slowCanonical(v []byte) ([]byte, error) {
	if len(bytes.TrimSpace(v)) == 0 {
		return nil, errRefused
	}
	out, err := json.Marshal(json.RawMessage(v))
	if err != nil || !utf8.Valid(v) {
		return nil, errRefused
	}
	return out, nil
}

var errRefused = errors.New("refused")

var canonicalSeeds = []string{
	`{"n":1,"name":"someone"}`, `[]`, `{}`, `[1,2,3]`, `"x"`, `0`, `-0`, `1.5e-3`, `1E+9`, `true`, `false`, `null`,
	`{"a":{"b":[{"c":null}]}}`, ` 1`, `1 `, `{"a" :1}`, `[1, 2]`, `"a<b"`, `"a&b"`, `"\u0041"`, `"é"`, "\"\u2028\"",
	`01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `{"a":1,}`, `[1,]`, `{"a"}`, `{,}`, `"unterminated`, `[`, `{`, ``,
	`"tab	in"`, `{"a":1}{"b":2}`, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	"\"\xff\"", `1234567890123456789012345678901234567890`, `-1.0E-0`, `{"":""}`,
}

// TestCanonicalFastAgreesWithEncodingJSON: whatever the fast path takes,
// encoding/json takes too and writes the same bytes.
func TestCanonicalFastAgreesWithEncodingJSON(t *testing.T) {
	for _, v := range canonicalSeeds {
		checkCanonicalFast(t, []byte(v))
	}
}

func checkCanonicalFast(t *testing.T, v []byte) {
	fast, ok := canonicalFast(v)
	if !ok {
		return
	}
	slow, err := slowCanonical(v)
	if err != nil {
		t.Fatalf("%q: the fast path takes it, encoding/json refuses it", v)
	}
	if !bytes.Equal(fast, slow) {
		t.Fatalf("%q: the fast path gives %q, encoding/json %q", v, fast, slow)
	}
	got, err := canonicalValue(v)
	if err != nil || !bytes.Equal(got, slow) {
		t.Fatalf("%q: canonicalValue gives %q, %v", v, got, err)
	}
	if len(v) > 0 && &fast[0] == &v[0] {
		t.Fatalf("%q: the fast path returns its input, not a copy", v)
	}
}

func FuzzCanonicalFast(f *testing.F) {
	for _, v := range canonicalSeeds {
		f.Add([]byte(v))
	}
	f.Fuzz(checkCanonicalFast)
}

func BenchmarkCanonicalValue(b *testing.B) {
	v := []byte(`{"n":12345,"name":"someone"}`)
	b.Run("fast", func(b *testing.B) {
		for range b.N {
			if _, err := canonicalValue(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for range b.N {
			if _, err := slowCanonical(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
