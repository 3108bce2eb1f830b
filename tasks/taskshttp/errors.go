package taskshttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/transport"
)

// errorBody is the body of every error response.
type errorBody struct {
	Error    string    `json:"error"`
	Position *position `json:"position,omitempty"`
}

// httpError is an error with the status it is answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &httpError{status: http.StatusConflict, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error of the client or of the transport to a status.
func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.Is(err, tasks.ErrNoQueue), errors.Is(err, tasks.ErrNoTask):
		return http.StatusNotFound
	case errors.Is(err, transport.ErrPayloadTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, tasks.ErrInvalid), errors.Is(err, transport.ErrInvalidESK):
		return http.StatusBadRequest
	case errors.Is(err, transport.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, transport.ErrUnavailable), errors.Is(err, tasks.ErrClosed),
		errors.Is(err, transport.ErrClosed), errors.Is(err, tasks.ErrOutcomeNotKept),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: "encoding the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers err with its status and a JSON body.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	h.writeWriteError(w, r, transport.Position{}, err)
}

// writeWriteError answers err about an operation that may have reached
// the log at pos (none when pos.Seq is 0): the body names the position.
func (h *Handler) writeWriteError(w http.ResponseWriter, r *http.Request, pos transport.Position, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		h.opts.Logger.Error("tasks http", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	body := errorBody{Error: err.Error()}
	if pos.Seq != 0 {
		p := toPosition(pos)
		body.Position = &p
	}
	writeJSON(w, status, body)
}

// readBody reads r's body, at most h.opts.MaxBody bytes, and checks that
// it is not empty.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{status: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("empty request body: want a JSON object")
	}
	return body, nil
}

// decodeBody reads r's body as one JSON value into v, rejecting unknown
// fields. Its errors say what was wrong: the byte offset of a syntax
// error, the field of a type error, a body too large (413).
func (h *Handler) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %s", describeJSONError(err, body))
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the JSON value at byte %d", dec.InputOffset())
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
