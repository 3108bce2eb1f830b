package loghttp

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transport"
)

// live streams the events of an ESK written after a stream position as
// Server-Sent Events, until the client leaves, its session ends, or the
// log fails.
func (h *Handler) live(w http.ResponseWriter, r *http.Request) {
	name, err := pathESK(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	after, given, err := uintParam(r.URL.Query(), "after")
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		// A browser reconnecting: on from the last event it got.
		if after, err = strconv.ParseUint(id, 10, 64); err != nil {
			h.api.WriteError(w, r, httpapi.BadRequest("Last-Event-ID %q: want the stream position of an event", id))
			return
		}
		given = true
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if !given {
		rctx, rcancel := context.WithTimeout(ctx, h.opts.Timeout)
		after, err = h.log.LastSeq(rctx, name)
		rcancel()
		if err != nil {
			h.api.WriteError(w, r, err)
			return
		}
	}
	type item struct {
		ev  transport.Event
		err error
	}
	items := make(chan item, 64)
	go func() {
		defer close(items)
		for ev, err := range h.log.Events(ctx, []string{name}, transport.ReadOptions{From: after + 1, Follow: true}) {
			select {
			case items <- item{ev, err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	rc, err := httpapi.StartEvents(w)
	if err != nil {
		return
	}
	if httpapi.SendEvent(w, "ready", 0, struct {
		ESK   string `json:"esk"`
		After uint64 `json:"after"`
	}{name, after}) != nil || rc.Flush() != nil {
		return
	}
	beat := time.NewTicker(h.opts.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			err = httpapi.KeepAlive(w)
		case it, ok := <-items:
			switch {
			case !ok, ctx.Err() != nil:
				// The stream ended, or the client or its session did.
				return
			case it.err != nil:
				h.opts.Logger.Warn("log http: live events", "esk", name, "err", it.err)
				_ = httpapi.SendEvent(w, "failed", 0, httpapi.ErrorBody{Error: it.err.Error()})
				_ = rc.Flush()
				return
			}
			err = httpapi.SendEvent(w, "event", it.ev.Seq, toEvent(it.ev, PreviewBytes))
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
