package kvhttp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

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
	if o.MaxBody == 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
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
	if o.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("%w: Heartbeat %v is negative", ErrInvalidOption, o.Heartbeat))
	}
	return errors.Join(errs...)
}

// Handler serves the JSON API and the browser UI of one [kv.Store]. See
// the package documentation for the paths.
type Handler struct {
	store *kv.Store
	opts  Options
	mux   *http.ServeMux
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
	h := &Handler{store: store, opts: opts, mux: http.NewServeMux()}
	h.routes()
	h.h = crossOriginProtection(http.HandlerFunc(h.serve))
	return h, nil
}

func (h *Handler) routes() {
	m := h.mux
	m.HandleFunc("GET /api/kv/tables", h.listTables)
	m.HandleFunc("POST /api/kv/tables", h.createTable)
	m.HandleFunc("GET /api/kv/tables/{table}", h.getTable)
	m.HandleFunc("GET /api/kv/tables/{table}/keys", h.listKeys)
	m.HandleFunc("GET /api/kv/tables/{table}/keys/{key...}", h.getKey)
	m.HandleFunc("POST /api/kv/tables/{table}/ops", h.postOp)
	m.HandleFunc("GET /api/kv/rejections", h.listRejections)
	m.HandleFunc("GET /api/kv/events", h.events)
	h.uiRoutes(m)
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// serve dispatches through the mux, and answers the paths and methods that
// the mux does not serve with a JSON error under /api/.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	if _, pattern := h.mux.Handler(r); pattern == "" && isAPI(r) {
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

func isAPI(r *http.Request) bool {
	return r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/")
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
