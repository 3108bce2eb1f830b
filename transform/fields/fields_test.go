package fields_test

import (
	"testing"

	"github.com/detbus/detbus/transform/fields"
)

func TestFields(t *testing.T) {
	for _, c := range []struct {
		in, reason string
	}{
		{`{"a":"x","n":5}`, ""},
		{`{"a":"x",`, "malformed JSON"},
		{"{\"a\":\"\xff\"}", "malformed JSON"},
		{`[1]`, "thing must be a JSON object"},
		{`{"a":1,"a":2}`, `duplicate field "a"`},
	} {
		if _, reason := fields.Parse([]byte(c.in), "thing"); reason != c.reason {
			t.Errorf("Parse(%s): %q, want %q", c.in, reason, c.reason)
		}
	}
	f, _ := fields.Parse([]byte(`{"s":"x","e":"","num":7,"null":null,"f":1.5,"exp":1e2,"neg":-3,"str":"7","big":9223372036854775808}`), "thing")
	for _, c := range []struct {
		name, want string
	}{{"s", ""}, {"e", "e must not be empty"}, {"num", "num must be a string"}, {"null", "missing null"}, {"absent", "missing absent"}} {
		if _, r := f.String(c.name); r != c.want {
			t.Errorf("String(%s): %q, want %q", c.name, r, c.want)
		}
	}
	for _, c := range []struct {
		name, want string
	}{{"num", ""}, {"f", "f must be an integer"}, {"exp", "exp must be an integer"}, {"neg", "neg must be positive"},
		{"str", "str must be an integer"}, {"big", "big out of range"}, {"null", "missing null"}} {
		if _, r := f.PositiveInt(c.name); r != c.want {
			t.Errorf("PositiveInt(%s): %q, want %q", c.name, r, c.want)
		}
	}
	if n, _ := f.PositiveInt("num"); n != 7 {
		t.Errorf("PositiveInt(num) = %d", n)
	}
	if got := fields.Quote("a\"b\u2028"); got != `"a\"b\u2028"` {
		t.Errorf("Quote = %s", got)
	}
}
