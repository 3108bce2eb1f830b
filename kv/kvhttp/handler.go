package kvhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/kv"
)

// Defaults of [Options].
const (
	// DefaultMaxBody bounds a request body: an op may carry a value as
	// large as NATS's default 1 MiB payload, plus its envelope.
	DefaultMaxBody = 1<<20 + 4<<10
	DefaultTimeout = 10 * time.Second
	// DefaultHeartbeat is the interval of the events stream's keep-alive
	// comments.
	DefaultHeartbeat = 15 * time.Second
	// DefaultPageSize and MaxPageSize bound a page of keys.
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ErrInvalidOption is wrapped by errors of [New] about its arguments.
var ErrInvalidOption = errors.New("kvhttp: invalid option")

// Options configures a [Handler]. The zero value means every default.
type Options struct {
	// MaxBody bounds a request body in bytes (default DefaultMaxBody); a
	// larger body is answered with 413.
	MaxBody int64
	// Timeout bounds a write: publishing the op and waiting until the
	// store has applied it (default DefaultTimeout).
	Timeout time.Duration
	// Heartbeat is the interval of keep-alive comments on the events
	// stream (default DefaultHeartbeat).
	Heartbeat time.Duration
	// Logger receives errors that are not the client's fault (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	httpapi.Default(&o.MaxBody, DefaultMaxBody)
	httpapi.Default(&o.Timeout, DefaultTimeout)
	httpapi.Default(&o.Heartbeat, DefaultHeartbeat)
	httpapi.Default(&o.Logger, slog.Default())
}

// Validate reports options that cannot work, wrapping [ErrInvalidOption].
func (o Options) Validate() error {
	return errors.Join(
		httpapi.Negative(ErrInvalidOption, "MaxBody", o.MaxBody),
		httpapi.Negative(ErrInvalidOption, "Timeout", o.Timeout),
		httpapi.Negative(ErrInvalidOption, "Heartbeat", o.Heartbeat),
	)
}

// Handler serves the JSON API of one [kv.Store]. See the package
// documentation for the paths.
type Handler struct {
	store *kv.Store
	opts  Options
	api   httpapi.API
	h     http.Handler
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for store. It does not close the store. It returns
// an error wrapping [ErrInvalidOption] when store is nil or opts do not
// validate.
func New(store *kv.Store, opts Options) (*Handler, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil store", ErrInvalidOption)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	h := &Handler{store: store, opts: opts,
		api: httpapi.API{Name: "kv http", MaxBody: opts.MaxBody, Logger: opts.Logger, Classify: statusOf}}
	mux := http.NewServeMux()
	h.routes(mux)
	// Every path and method the mux does not serve gets a JSON error.
	h.h = httpapi.CrossOriginProtection(httpapi.Mux(mux, nil))
	return h, nil
}

func (h *Handler) routes(m *http.ServeMux) {
	m.HandleFunc("GET /api/kv/tables", h.listTables)
	m.HandleFunc("POST /api/kv/tables", h.createTable)
	m.HandleFunc("GET /api/kv/tables/{table}", h.getTable)
	m.HandleFunc("GET /api/kv/tables/{table}/keys", h.listKeys)
	m.HandleFunc("GET /api/kv/tables/{table}/keys/{key...}", h.getKey)
	m.HandleFunc("POST /api/kv/tables/{table}/ops", h.postOp)
	m.HandleFunc("GET /api/kv/rejections", h.listRejections)
	m.HandleFunc("GET /api/kv/events", h.events)
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }
