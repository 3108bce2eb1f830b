package taskshttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/transport"
)

// statusOf maps an error of the client or of the transport to a status, 0
// for one it does not know (a 500).
func statusOf(err error) int {
	switch {
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
	return 0
}

// writeWriteError answers err about an operation that may have reached
// the log at pos (none when pos.Seq is 0): the body names the position.
func (h *Handler) writeWriteError(w http.ResponseWriter, r *http.Request, pos transport.Position, err error) {
	if pos.Seq == 0 {
		h.api.WriteError(w, r, err)
		return
	}
	p := httpapi.ToPosition(pos)
	h.api.WriteErrorAt(w, r, err, &p)
}
