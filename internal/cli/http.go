package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/detbus/detbus/internal/telemetry"
)

// ServeMetrics serves /metrics (Prometheus format) and /healthz on addr
// until ctx is done. It returns the address it listens on.
func ServeMetrics(ctx context.Context, addr string, tel *telemetry.Telemetry) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("http listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.Handler())
	mux.HandleFunc("GET /healthz", Healthz)
	StartHTTP(ctx, ln, mux)
	return ln.Addr().String(), nil
}

// Healthz answers "ok".
func Healthz(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }

// StartHTTP serves h on ln until ctx is done. Requests, event streams
// included, see ctx end.
func StartHTTP(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
}
