package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ReadBody reads r's body, at most a.MaxBody bytes (413 beyond), and
// checks that it is not empty.
func (a *API) ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "request body larger than %d bytes", mbe.Limit)
		}
		return nil, BadRequest("reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, BadRequest("empty request body: want a JSON object")
	}
	return body, nil
}

// DecodeBody reads r's body as one JSON value into v, rejecting unknown
// fields. Its errors say what was wrong: the byte offset of a syntax
// error, the field of a type error, a body too large (413).
func (a *API) DecodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := a.ReadBody(w, r)
	if err != nil {
		return err
	}
	return DecodeJSON(body, v)
}

// DecodeJSON decodes body, one JSON value, into v as [API.DecodeBody] does.
func DecodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("malformed JSON body: %s", describeJSONError(err, body))
	}
	if dec.More() {
		return BadRequest("malformed JSON body: data after the JSON value at byte %d", dec.InputOffset())
	}
	return nil
}

// describeJSONError names where a decoding error is: the byte offset of a
// syntax error, the field and types of a type error.
func describeJSONError(err error, body []byte) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%v (at byte offset %d)", se, se.Offset-1)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("want %s, got JSON %s", te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("unexpected end of JSON input after %d bytes", len(body))
	}
	return err.Error()
}
