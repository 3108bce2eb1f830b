package machine

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"

	strict "github.com/detbus/detbus/transform/fields"
)

// FuzzSplitFields holds the fast field splitter to strict.Parse, and
// jsonString to encoding/json, on any input: same reason, same fields,
// same raw values, same strings.
func FuzzSplitFields(f *testing.F) {
	for _, s := range []string{
		`{"op":"enqueue","id":"t1","payload":{"a":[1,"}",{"b":"\"]"}]},"priority":-1}`,
		` { "a" : "x\u0041" , "\u0061" : 1 } `, `{"a":1,"a":2}`, `{}`, `[]`, `"s"`, `{"a":tru}`,
		`{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"x":1e5,"y":null,"z":[[[]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotReason := splitFields(data, "thing")
		want, wantReason := strict.Parse(data, "thing")
		if gotReason != wantReason {
			t.Fatalf("reason %q, strict.Parse says %q", gotReason, wantReason)
		}
		if !maps.EqualFunc(got, want, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Fatalf("fields %q, strict.Parse gives %q", got, want)
		}
		for name, raw := range got {
			var s string
			wantOK := json.Unmarshal(raw, &s) == nil
			gotS, gotOK := jsonString(raw)
			if gotOK != wantOK || gotOK && gotS != s {
				t.Fatalf("field %q: jsonString(%s) = %q, %v; encoding/json gives %q, %v", name, raw, gotS, gotOK, s, wantOK)
			}
		}
	})
}
