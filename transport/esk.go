package transport

import (
	"fmt"
	"strings"
)

// MaxESKLength is the longest event source key accepted, in bytes.
const MaxESKLength = 200

// MaxESKTokens is the largest number of dot-separated tokens in an ESK.
const MaxESKTokens = 16

// ValidateESK reports whether esk is a literal event source key: one to
// [MaxESKTokens] dot-separated tokens, at most [MaxESKLength] bytes, each
// token non-empty and made of printable ASCII other than the NATS wildcards
// '*' and '>'. The error wraps [ErrInvalidESK] and names the offending token
// and character.
func ValidateESK(esk string) error {
	return validateESK(esk, false)
}

// ValidateESKPattern is [ValidateESK] for filters: a token may also be the
// wildcard '*', and the last token may be '>'.
func ValidateESKPattern(pattern string) error {
	return validateESK(pattern, true)
}

func validateESK(esk string, wildcards bool) error {
	what := "ESK"
	if wildcards {
		what = "ESK pattern"
	}
	if esk == "" {
		return &ESKError{ESK: esk, Reason: what + " is empty"}
	}
	if len(esk) > MaxESKLength {
		return &ESKError{ESK: esk, Reason: fmt.Sprintf("%s is %d bytes long, the limit is %d", what, len(esk), MaxESKLength)}
	}
	if n := strings.Count(esk, ".") + 1; n > MaxESKTokens {
		return &ESKError{ESK: esk, Reason: fmt.Sprintf("%s has %d tokens, the limit is %d", what, n, MaxESKTokens)}
	}
	for i, start := 0, 0; start <= len(esk); i++ {
		end := strings.IndexByte(esk[start:], '.')
		if end < 0 {
			end = len(esk)
		} else {
			end += start
		}
		if err := validateToken(esk, esk[start:end], i, end == len(esk), wildcards); err != nil {
			return err
		}
		start = end + 1
	}
	return nil
}

func validateToken(esk, tok string, i int, last, wildcards bool) error {
	if tok == "" {
		return &ESKError{ESK: esk, Reason: fmt.Sprintf("token %d is empty (leading, trailing or double dot)", i+1)}
	}
	if wildcards && (tok == "*" || (tok == ">" && last)) {
		return nil
	}
	for j := 0; j < len(tok); j++ {
		c := tok[j]
		switch {
		case c == '*' || c == '>':
			if wildcards {
				return &ESKError{ESK: esk, Reason: fmt.Sprintf("token %d %q: wildcard %q must be a whole token ('>' only last)", i+1, tok, c)}
			}
			return &ESKError{ESK: esk, Reason: fmt.Sprintf("token %d %q contains wildcard %q; an ESK is a literal key", i+1, tok, c)}
		case c <= ' ' || c == 0x7f:
			return &ESKError{ESK: esk, Reason: fmt.Sprintf("token %d %q contains whitespace or a control character (byte 0x%02x)", i+1, tok, c)}
		case c >= 0x80:
			return &ESKError{ESK: esk, Reason: fmt.Sprintf("token %d %q contains a non-ASCII byte 0x%02x", i+1, tok, c)}
		}
	}
	return nil
}

// ESKError is the error for an invalid ESK or ESK pattern.
type ESKError struct {
	ESK    string // the rejected key, as given
	Reason string // what is wrong with it
}

func (e *ESKError) Error() string {
	esk := e.ESK
	if len(esk) > 64 {
		esk = esk[:64] + "…"
	}
	return fmt.Sprintf("transport: invalid ESK %q: %s", esk, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidESK) true.
func (e *ESKError) Unwrap() error { return ErrInvalidESK }

// MatchESK reports whether esk matches pattern, an ESK with the wildcards
// '*' (one token) and '>' (the rest), as [User.Sources] are written.
func MatchESK(pattern, esk string) bool { return subjectMatches(pattern, esk) }
