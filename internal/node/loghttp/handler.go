package loghttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transport"
)

// Defaults and bounds of [Options] and of the API's pages.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultHeartbeat = 15 * time.Second
	// DefaultPageSize and MaxPageSize bound a page of events.
	DefaultPageSize = 50
	MaxPageSize     = 500
	// PreviewBytes is the most of a payload a page of events carries; the
	// event's own path gives the whole payload.
	PreviewBytes = 64 << 10
)

// APIPrefix is where the server mounts a [Handler] ([web.API]).
const APIPrefix = "/api/log/"

// ErrInvalidOption is wrapped by errors of [New] about its arguments.
var ErrInvalidOption = errors.New("loghttp: invalid option")

// Options configures a [Handler]. The zero value means every default.
type Options struct {
	// Timeout bounds one read of the log (default DefaultTimeout).
	Timeout time.Duration
	// Heartbeat is the interval of keep-alive comments on the live
	// stream (default DefaultHeartbeat).
	Heartbeat time.Duration
	// Logger receives errors that are not the client's fault (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	httpapi.Default(&o.Timeout, DefaultTimeout)
	httpapi.Default(&o.Heartbeat, DefaultHeartbeat)
	httpapi.Default(&o.Logger, slog.Default())
}

// Validate reports options that cannot work, wrapping [ErrInvalidOption].
func (o Options) Validate() error {
	return errors.Join(
		httpapi.Negative(ErrInvalidOption, "Timeout", o.Timeout),
		httpapi.Negative(ErrInvalidOption, "Heartbeat", o.Heartbeat),
	)
}

// Handler serves the JSON API of one [transport.Log]. See the package
// documentation for the paths.
type Handler struct {
	log  *transport.Log
	dir  *transport.Directory
	opts Options
	api  httpapi.API
	h    http.Handler
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for l. It does not close l. It returns an error
// wrapping [ErrInvalidOption] when l is nil or opts do not validate.
func New(l *transport.Log, opts Options) (*Handler, error) {
	if l == nil {
		return nil, fmt.Errorf("%w: nil log", ErrInvalidOption)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	h := &Handler{log: l, dir: transport.NewDirectory(l), opts: opts,
		api: httpapi.API{Name: "log http", Logger: opts.Logger, Classify: statusOf}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/log/esks", h.listESKs)
	mux.HandleFunc("GET /api/log/esks/{esk}/events", h.listEvents)
	mux.HandleFunc("GET /api/log/esks/{esk}/events/{index}", h.getEvent)
	mux.HandleFunc("GET /api/log/esks/{esk}/live", h.live)
	// Every path and method the mux does not serve gets a JSON error.
	h.h = httpapi.Mux(mux, nil)
	return h, nil
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// statusOf maps an error of the transport to a status, 0 for one it does
// not know (a 500).
func statusOf(err error) int {
	switch {
	case errors.Is(err, transport.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, transport.ErrInvalidESK), errors.Is(err, transport.ErrInvalidOption):
		return http.StatusBadRequest
	case errors.Is(err, transport.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, transport.ErrUnavailable), errors.Is(err, transport.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return 0
}
