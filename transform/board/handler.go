package board

import (
	"net/http"
	"strconv"

	"github.com/detbus/detbus/internal/httpapi"
)

// Handler returns the JSON API of the board under /api/transforms (see
// the package documentation). It answers from what the board last polled,
// without a round trip to NATS; it does no authentication (the node's
// access rule wraps it).
func (b *Board) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/transforms/dets", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, b.Overview())
	})
	mux.HandleFunc("GET /api/transforms/dets/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		v, ok := b.Get(id)
		if !ok {
			httpapi.WriteJSON(w, http.StatusNotFound, httpapi.ErrorBody{Error: "no transform " + strconv.Quote(id) + " on stream " + b.stream +
				": GET /api/transforms/dets lists them by id (the DET's name, <name>.g<N> for generation N)"})
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, v)
	})
	return httpapi.Mux(mux, nil)
}
