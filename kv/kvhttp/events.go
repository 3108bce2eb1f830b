package kvhttp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/kv"
)

// change is the data of a "change" event.
type change struct {
	Table    string   `json:"table"`
	Key      string   `json:"key"`
	Position position `json:"position"`
	Value    value    `json:"value"`
}

// events streams the store's changes as Server-Sent Events until the
// client leaves or the store closes.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// A stream outlives any write deadline the server sets for requests.
	_ = rc.SetWriteDeadline(time.Time{})
	ctx := r.Context()
	changes := h.store.Watch(ctx, r.URL.Query().Get("table"))
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if sendEvent(w, "ready", 0, struct {
		Applied uint64 `json:"applied"`
	}{h.store.Applied()}) != nil || rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(h.opts.Heartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			_, err = io.WriteString(w, ": keep-alive\n\n")
		case c, ok := <-changes:
			if !ok {
				return
			}
			err = sendChange(w, c)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

func sendChange(w io.Writer, c kv.Change) error {
	if c.Dropped > 0 {
		if err := sendEvent(w, "dropped", 0, struct {
			Dropped uint64 `json:"dropped"`
		}{c.Dropped}); err != nil {
			return err
		}
	}
	if c.Rejected != nil {
		return sendEvent(w, "rejection", c.Rejected.Position.Seq, toRejection(*c.Rejected))
	}
	v := toValue(c.Value)
	v.Meta = nil // a change carries no CRDT state: the key's GET has it
	return sendEvent(w, "change", c.Position.Seq, change{Table: c.Table, Key: c.Key,
		Position: httpapi.ToPosition(c.Position), Value: v})
}

// sendEvent writes one event; id 0 writes none. JSON has no raw newline,
// so the data is one line.
func sendEvent(w io.Writer, name string, id uint64, data any) error {
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
