package transport

import (
	"errors"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/allocbound"
)

func TestValidateESK(t *testing.T) {
	for _, c := range []struct {
		esk, pattern string // inputs: esk for ValidateESK, pattern for ValidateESKPattern
		wantErr      string // substring of the error, "" for valid
	}{
		{esk: "orders", wantErr: ""},
		{esk: "orders.eu.1", wantErr: ""},
		{esk: "a-b_c:d@e~f+g=h/i", wantErr: ""},
		{esk: "", wantErr: "is empty"},
		{esk: "a..b", wantErr: "token 2 is empty"},
		{esk: ".a", wantErr: "token 1 is empty"},
		{esk: "a.", wantErr: "token 2 is empty"},
		{esk: "a.b c", wantErr: `token 2 "b c" contains whitespace`},
		{esk: "a\tb", wantErr: "whitespace or a control character (byte 0x09)"},
		{esk: "a.*", wantErr: `token 2 "*" contains wildcard '*'`},
		{esk: "a.>", wantErr: "contains wildcard '>'"},
		{esk: "a.b*", wantErr: `token 2 "b*"`},
		{esk: "caf\xc3\xa9", wantErr: "non-ASCII byte 0xc3"},
		{esk: strings.Repeat("a", MaxESKLength+1), wantErr: "201 bytes long, the limit is 200"},
		{esk: strings.Repeat("a.", MaxESKTokens) + "a", wantErr: "17 tokens, the limit is 16"},
		{pattern: "orders.*", wantErr: ""},
		{pattern: "orders.>", wantErr: ""},
		{pattern: ">", wantErr: ""},
		{pattern: "*.eu", wantErr: ""},
		{pattern: "a.>.b", wantErr: `token 2 ">": wildcard '>' must be a whole token ('>' only last)`},
		{pattern: "a.b*", wantErr: "must be a whole token"},
		{pattern: "a..*", wantErr: "token 2 is empty"},
	} {
		var err error
		in := c.esk
		if c.pattern != "" {
			in = c.pattern
			err = ValidateESKPattern(c.pattern)
		} else {
			err = ValidateESK(c.esk)
		}
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%q: unexpected error %v", in, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q: error %v, want it to say %q", in, err, c.wantErr)
		case err != nil && !errors.Is(err, ErrInvalidESK):
			t.Errorf("%q: %v does not wrap ErrInvalidESK", in, err)
		}
	}
}

// FuzzValidateESK: validation never panics, and what it accepts is a
// literal NATS subject token sequence within the limits.
func FuzzValidateESK(f *testing.F) {
	for _, s := range []string{"orders.eu", "a..b", "a.*", ">", "a b", "caf\xc3\xa9", "", "x.y.z.>", strings.Repeat("a.", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, esk string) {
		allocbound.Check(t, allocbound.Linear(len(esk), 4), "ValidateESK", func() {
			_ = ValidateESK(esk)
			_ = ValidateESKPattern(esk)
		})
		err := ValidateESK(esk)
		perr := ValidateESKPattern(esk)
		if err != nil {
			if !errors.Is(err, ErrInvalidESK) || err.Error() == "" {
				t.Fatalf("%q: bad error %v", esk, err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("%q: a valid ESK is not a valid pattern: %v", esk, perr)
		}
		tokens := strings.Split(esk, ".")
		if len(esk) > MaxESKLength || len(tokens) > MaxESKTokens {
			t.Fatalf("%q: accepted beyond the limits", esk)
		}
		for _, tok := range tokens {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
				t.Fatalf("%q: accepted token %q", esk, tok)
			}
		}
	})
}
