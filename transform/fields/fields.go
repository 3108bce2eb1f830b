// Package fields reads the fields of JSON inputs strictly, with reasons
// that every instance of a deterministic transform writes the same way. It
// imports nothing but the standard library, so pure state machines can use
// it.
package fields

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Fields is the top-level object of a JSON input, split into raw fields
// for validation that every instance performs the same way: a field given
// twice is refused instead of resolved (JSON decoders disagree on which of
// the two counts), integers are read from their literal (never through a
// float), and reasons never include encoding/json's error text, which can
// change between Go releases. Methods return a reason, "" when the field
// is good, for the DET to put in a rejection output.
type Fields map[string]json.RawMessage

// Parse splits data into the fields of its top-level object. The
// reason is "malformed JSON" for invalid JSON or invalid UTF-8 (which
// decoders would replace), and "<what> must be a JSON object" for JSON that
// is not an object.
func Parse(data []byte, what string) (Fields, string) {
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, "malformed JSON"
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, what + " must be a JSON object"
	}
	fields := Fields{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		var raw json.RawMessage
		if err != nil || !ok || dec.Decode(&raw) != nil {
			return nil, "malformed JSON" // not reached for valid JSON
		}
		if _, dup := fields[name]; dup {
			return nil, "duplicate field " + Quote(name)
		}
		fields[name] = raw
	}
	return fields, ""
}

// Present reports whether the field is there and not null.
func (f Fields) Present(name string) bool {
	raw, ok := f[name]
	return ok && string(bytes.TrimSpace(raw)) != "null"
}

// String reads a required non-empty string field.
func (f Fields) String(name string) (string, string) {
	if !f.Present(name) {
		return "", "missing " + name
	}
	var s string
	if json.Unmarshal(f[name], &s) != nil {
		return "", name + " must be a string"
	}
	if s == "" {
		return "", name + " must not be empty"
	}
	return s, ""
}

// PositiveInt reads a required positive integer field within int64: 100
// is one, while 100.0, 1e2 and "100" are not.
func (f Fields) PositiveInt(name string) (int64, string) {
	if !f.Present(name) {
		return 0, "missing " + name
	}
	lit := string(bytes.TrimSpace(f[name]))
	if lit == "" || (lit[0] != '-' && (lit[0] < '0' || lit[0] > '9')) {
		return 0, name + " must be an integer"
	}
	n, err := strconv.ParseInt(lit, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, name + " out of range"
	}
	if err != nil { // a fraction or an exponent
		return 0, name + " must be an integer"
	}
	if n <= 0 {
		return 0, name + " must be positive"
	}
	return n, ""
}

// Quote quotes s as a JSON string for a reason. Unlike %q, its escaping
// does not depend on the Unicode tables of the Go release, so every
// instance writes the same bytes.
func Quote(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}
