package taskshttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/detbus/detbus/tasks"
)

// Defaults of [Options].
const (
	// DefaultMaxBody bounds a request body: a payload may be as large as
	// NATS's default 1 MiB message, plus the enqueue's other fields.
	DefaultMaxBody = 1<<20 + 4<<10
	DefaultTimeout = 10 * time.Second
	// DefaultPageSize and MaxPageSize bound a page of tasks.
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ErrInvalidOption is wrapped by errors of [New] about its arguments.
var ErrInvalidOption = errors.New("taskshttp: invalid option")

// Options configures a [Handler]. The zero value means every default.
type Options struct {
	// MaxBody bounds a request body in bytes (default DefaultMaxBody); a
	// larger body is answered with 413.
	MaxBody int64
	// Timeout bounds a write: publishing the operation and waiting until
	// the client has folded it (default DefaultTimeout).
	Timeout time.Duration
	// Logger receives errors that are not the client's fault (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports options that cannot work, wrapping [ErrInvalidOption].
func (o Options) Validate() error {
	var errs []error
	if o.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxBody %d is negative", ErrInvalidOption, o.MaxBody))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: Timeout %v is negative", ErrInvalidOption, o.Timeout))
	}
	return errors.Join(errs...)
}

// Handler serves the JSON API of one [tasks.Client]. See the package
// documentation for the paths.
type Handler struct {
	client *tasks.Client
	opts   Options
	mux    *http.ServeMux
	h      http.Handler
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for client. It does not close the client. It
// returns an error wrapping [ErrInvalidOption] when client is nil or opts
// do not validate.
func New(client *tasks.Client, opts Options) (*Handler, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrInvalidOption)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	h := &Handler{client: client, opts: opts, mux: http.NewServeMux()}
	h.routes()
	h.h = crossOriginProtection(http.HandlerFunc(h.serve))
	return h, nil
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /api/tasks/status", h.status)
	m.HandleFunc("GET /api/tasks/queues", h.listQueues)
	m.HandleFunc("POST /api/tasks/queues", h.createQueue)
	m.HandleFunc("GET /api/tasks/queues/{queue}", h.getQueue)
	m.HandleFunc("GET /api/tasks/queues/{queue}/tasks", h.listTasks)
	m.HandleFunc("POST /api/tasks/queues/{queue}/tasks", h.enqueue)
	m.HandleFunc("GET /api/tasks/queues/{queue}/tasks/{id}", h.getTask)
	m.HandleFunc("POST /api/tasks/queues/{queue}/tasks/{id}/cancel", h.cancel)
	m.HandleFunc("POST /api/tasks/queues/{queue}/tasks/{id}/retry", h.retry)
	m.HandleFunc("GET /api/tasks/queues/{queue}/rejections", h.listRejections)
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// serve dispatches through the mux, and answers the paths and methods
// that the mux does not serve with a JSON error.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.mux.ServeHTTP(&jsonStatus{ResponseWriter: w}, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// crossOriginProtection refuses non-safe cross-origin browser requests
// (see [http.CrossOriginProtection]) with a JSON 403.
func crossOriginProtection(h http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, errorBody{Error: "cross-origin request refused: write from a page of this server, or from a client that is not a browser"})
	}))
	return c.Handler(h)
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
	writeJSON(j.ResponseWriter, code, errorBody{Error: msg})
}

func (j *jsonStatus) Write(p []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}
