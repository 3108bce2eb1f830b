// Package httpapi holds what the JSON APIs of a detbus node (kv/kvhttp,
// tasks/taskshttp, internal/node/loghttp, ...) have in common: JSON
// answers and error bodies, errors that carry their status, request
// bodies read within a limit and decoded strictly, JSON answers to the
// paths and methods a mux does not serve, Server-Sent Events, and the
// refusal of cross-origin browser writes.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/detbus/detbus/transport"
)

// Position is a position in the log as the APIs show it.
type Position struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
	Seq   uint64 `json:"seq"`
}

// ToPosition returns p as the APIs show it.
func ToPosition(p transport.Position) Position {
	return Position{ESK: p.ESK, Index: p.Index, Seq: p.Seq}
}

// ErrorBody is the body of every error answer. Position is the position of
// a write that reached the log but failed after.
type ErrorBody struct {
	Error    string    `json:"error"`
	Position *Position `json:"position,omitempty"`
}

// Error is an error with the status it is answered with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Errorf returns an *Error with status.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// BadRequest returns an *Error answered with 400.
func BadRequest(format string, args ...any) error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// Conflict returns an *Error answered with 409.
func Conflict(format string, args ...any) error {
	return Errorf(http.StatusConflict, format, args...)
}

// WriteJSON answers v as JSON with status, not to be cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: "encoding the response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// API holds what the handlers of one JSON API share to read requests and
// answer errors.
type API struct {
	// Name names the API in the log ("kv http").
	Name string
	// MaxBody bounds a request body in bytes.
	MaxBody int64
	// Logger receives the errors answered with 500, which are not the
	// client's fault.
	Logger *slog.Logger
	// Classify returns the status of an error that is not an [*Error]:
	// the API's own errors and those of what it serves. 0 means 500.
	Classify func(error) int
}

// Status returns the status err is answered with: an [*Error]'s own, else
// the one Classify gives, else 500.
func (a *API) Status(err error) int {
	var he *Error
	if errors.As(err, &he) {
		return he.Status
	}
	if a.Classify != nil {
		if s := a.Classify(err); s != 0 {
			return s
		}
	}
	return http.StatusInternalServerError
}

// WriteError answers err with its status and a JSON body, and logs it
// when the status is 500.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.WriteErrorAt(w, r, err, nil)
}

// WriteErrorAt is [API.WriteError] for a write that reached the log at pos
// (none when nil): the body names it.
func (a *API) WriteErrorAt(w http.ResponseWriter, r *http.Request, err error, pos *Position) {
	status := a.Status(err)
	if status == http.StatusInternalServerError {
		a.Logger.Error(a.Name, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	WriteJSON(w, status, ErrorBody{Error: err.Error(), Position: pos})
}

// CrossOriginProtection refuses non-safe cross-origin browser requests
// (see [http.CrossOriginProtection]) with a JSON 403.
func CrossOriginProtection(h http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusForbidden, ErrorBody{Error: "cross-origin request refused: write from a page of this server, or from a client that is not a browser"})
	}))
	return c.Handler(h)
}

// Mux returns a handler that dispatches through mux, and answers the
// requests mux has no pattern for (its 404 and 405) with JSON errors when
// json(r) is true, or always when json is nil.
func Mux(mux *http.ServeMux, json func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" && (json == nil || json(r)) {
			w = &jsonStatus{ResponseWriter: w}
		}
		mux.ServeHTTP(w, r)
	})
}

// jsonStatus turns the mux's plain-text 404 and 405 answers into JSON
// errors, keeping their status and headers (Allow).
type jsonStatus struct {
	http.ResponseWriter
	wrote bool
}

func (j *jsonStatus) WriteHeader(code int) {
	if j.wrote {
		return
	}
	j.wrote = true
	msg := strings.ToLower(http.StatusText(code))
	if code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("method not allowed (allowed: %s)", j.Header().Get("Allow"))
	} else if code == http.StatusNotFound {
		msg = "no such path"
	}
	WriteJSON(j.ResponseWriter, code, ErrorBody{Error: msg})
}

func (j *jsonStatus) Write(p []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}

// PageLimit reads the limit parameter of a page: def when absent, else a
// number from 1 to max.
func PageLimit(q url.Values, def, max int) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, BadRequest("limit %q: want a number from 1 to %d", s, max)
	}
	return n, nil
}

// Data is a payload of the log as the APIs show it: as text when it is
// UTF-8, else in DataBase64. Embedded in a JSON shape, its fields are the
// shape's.
type Data struct {
	Data       string `json:"data,omitempty"`
	DataBase64 []byte `json:"data_base64,omitempty"`
}

// ToData returns b as the APIs show it.
func ToData(b []byte) Data {
	if utf8.Valid(b) {
		return Data{Data: string(b)}
	}
	return Data{DataBase64: b}
}

// Default sets *v to def when it is the zero value: an option left unset.
func Default[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Negative returns an error wrapping invalid when the option name is
// below zero, else nil.
func Negative[T int64 | time.Duration](invalid error, name string, v T) error {
	if v < 0 {
		return fmt.Errorf("%w: %s %v is negative", invalid, name, v)
	}
	return nil
}
