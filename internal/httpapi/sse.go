package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// StartEvents answers a request with a stream of Server-Sent Events: it
// lifts the server's write deadline (a stream outlives it), sends the
// headers and a retry hint of two seconds, and returns the controller to
// flush each event with. An error means the client is gone.
func StartEvents(w http.ResponseWriter) (*http.ResponseController, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 2000\n\n"); err != nil {
		return nil, err
	}
	return rc, nil
}

// SendEvent writes one event named name with data as JSON, and with id
// unless it is 0. JSON has no raw newline, so the data is one line.
func SendEvent(w io.Writer, name string, id uint64, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if id != 0 {
		_, err = fmt.Fprintf(w, "event: %s\nid: %d\ndata: %s\n\n", name, id, b)
	} else {
		_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	}
	return err
}

// KeepAlive writes the comment that keeps proxies from closing an idle
// stream.
func KeepAlive(w io.Writer) error {
	_, err := io.WriteString(w, ": keep-alive\n\n")
	return err
}
