package taskshttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
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
	httpapi.Default(&o.MaxBody, DefaultMaxBody)
	httpapi.Default(&o.Timeout, DefaultTimeout)
	httpapi.Default(&o.Logger, slog.Default())
}

// Validate reports options that cannot work, wrapping [ErrInvalidOption].
func (o Options) Validate() error {
	return errors.Join(
		httpapi.Negative(ErrInvalidOption, "MaxBody", o.MaxBody),
		httpapi.Negative(ErrInvalidOption, "Timeout", o.Timeout),
	)
}

// Handler serves the JSON API of one [tasks.Client]. See the package
// documentation for the paths.
type Handler struct {
	client *tasks.Client
	opts   Options
	api    httpapi.API
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
	h := &Handler{client: client, opts: opts,
		api: httpapi.API{Name: "tasks http", MaxBody: opts.MaxBody, Logger: opts.Logger, Classify: statusOf}}
	mux := http.NewServeMux()
	h.routes(mux)
	// Every path and method the mux does not serve gets a JSON error.
	h.h = httpapi.CrossOriginProtection(httpapi.Mux(mux, nil))
	return h, nil
}

func (h *Handler) routes(m *http.ServeMux) {
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
