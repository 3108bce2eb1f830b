package kvhttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// statusOf maps an error of the store or of the transport to a status, 0
// for one it does not know (a 500).
func statusOf(err error) int {
	switch {
	case errors.Is(err, kv.ErrNoTable), errors.Is(err, kv.ErrNoKey):
		return http.StatusNotFound
	case errors.Is(err, kv.ErrTableType):
		return http.StatusConflict
	case errors.Is(err, transport.ErrPayloadTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, kv.ErrInvalidOp), errors.Is(err, transport.ErrInvalidESK):
		return http.StatusBadRequest
	case errors.Is(err, transport.ErrUnavailable), errors.Is(err, kv.ErrClosed),
		errors.Is(err, transport.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return 0
}
