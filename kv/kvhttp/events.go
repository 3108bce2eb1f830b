package kvhttp

import (
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
	ctx := r.Context()
	changes := h.store.Watch(ctx, r.URL.Query().Get("table"))
	rc, err := httpapi.StartEvents(w)
	if err != nil {
		return
	}
	if httpapi.SendEvent(w, "ready", 0, struct {
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
			err = httpapi.KeepAlive(w)
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
		if err := httpapi.SendEvent(w, "dropped", 0, struct {
			Dropped uint64 `json:"dropped"`
		}{c.Dropped}); err != nil {
			return err
		}
	}
	if c.Rejected != nil {
		return httpapi.SendEvent(w, "rejection", c.Rejected.Position.Seq, toRejection(*c.Rejected))
	}
	v := toValue(c.Value)
	v.Meta = nil // a change carries no CRDT state: the key's GET has it
	return httpapi.SendEvent(w, "change", c.Position.Seq, change{Table: c.Table, Key: c.Key,
		Position: httpapi.ToPosition(c.Position), Value: v})
}
