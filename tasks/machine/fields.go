package machine

import (
	"bytes"
	"encoding/json"
	"iter"
	"unicode/utf8"

	strict "github.com/detbus/detbus/transform/fields"
)

// The folds of every client decode every operation, so decoding is on
// the hot path. splitFields and jsonString give exactly the results of
// strict.Parse and of encoding/json for strings, without json.Decoder's
// token machinery, which costs several times more than the checks
// themselves; FuzzSplitFields holds them to that.

// splitFields is strict.Parse: the fields of a JSON object, or the
// reason the data is not one ("malformed JSON", "<what> must be a JSON
// object", "duplicate field ..."). The raw values alias data.
func splitFields(data []byte, what string) (strict.Fields, string) {
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, "malformed JSON"
	}
	return splitValid(data, what)
}

// splitValid is splitFields for data known to be valid JSON.
func splitValid(data []byte, what string) (strict.Fields, string) {
	f := make(strict.Fields, 4)
	if reason := splitInto(f, data, what); reason != "" {
		return nil, reason
	}
	return f, ""
}

// splitInto is splitValid filling an empty f.
func splitInto(f strict.Fields, data []byte, what string) string {
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return what + " must be a JSON object"
	}
	if i = skipSpace(data, i+1); data[i] == '}' {
		return ""
	}
	for {
		end := endOfString(data, i)
		name, _ := jsonString(data[i:end])
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		vend := endOfValue(data, i)
		if _, dup := f[name]; dup {
			return "duplicate field " + strict.Quote(name)
		}
		f[name] = data[i:vend:vend]
		if i = skipSpace(data, vend); data[i] == '}' {
			return ""
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

// arrayElems yields the elements of a JSON array, in valid JSON.
func arrayElems(data []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		i := skipSpace(data, 1)
		if data[i] == ']' {
			return
		}
		for {
			end := endOfValue(data, i)
			if !yield(data[i:end:end]) {
				return
			}
			if i = skipSpace(data, end); data[i] == ']' {
				return
			}
			i = skipSpace(data, i+1)
		}
	}
}

// countArray counts the elements of a JSON array, in valid JSON.
func countArray(data []byte) int {
	n := 0
	for range arrayElems(data) {
		n++
	}
	return n
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// endOfString returns the index after the string starting at data[i],
// in valid JSON.
func endOfString(data []byte, i int) int {
	for j := i + 1; ; j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
}

// endOfValue returns the index after the value starting at data[i], in
// valid JSON.
func endOfValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return endOfString(data, i)
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch data[j] {
			case '"':
				j = endOfString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
	}
	j := i
	for j < len(data) && !bytes.ContainsRune([]byte(",}] \t\n\r"), rune(data[j])) {
		j++
	}
	return j
}

// jsonString decodes raw as json.Unmarshal into a string would: false
// when raw is not a JSON string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// fieldString is strict.Fields.String: a required non-empty string.
func fieldString(f strict.Fields, name string) (string, string) {
	if !f.Present(name) {
		return "", "missing " + name
	}
	s, ok := jsonString(f[name])
	switch {
	case !ok:
		return "", name + " must be a string"
	case s == "":
		return "", name + " must not be empty"
	}
	return s, ""
}

// unknownField returns the first name of f, in sorted order, that is
// not known.
func unknownField(f strict.Fields, known func(string) bool) (string, bool) {
	var first string
	found := false
	for name := range f {
		if !known(name) && (!found || name < first) {
			first, found = name, true
		}
	}
	return first, found
}
