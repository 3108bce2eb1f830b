package loghttp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transport"
)

// esk is an ESK as the list shows it.
type esk struct {
	ESK      string     `json:"esk"`
	Count    uint64     `json:"count"`
	LastSeq  uint64     `json:"last_seq"`
	LastTime *time.Time `json:"last_time"`
}

func (h *Handler) listESKs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := httpapi.PageLimit(q, transport.DefaultESKPage, transport.MaxESKPage)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	page, err := h.dir.List(ctx, transport.ESKQuery{Prefix: q.Get("prefix"), After: q.Get("after"), Limit: limit})
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	out := struct {
		ESKs  []esk  `json:"esks"`
		Total int    `json:"total"`
		More  bool   `json:"more"`
		Next  string `json:"next,omitempty"`
		Log   struct {
			Events  uint64 `json:"events"`
			LastSeq uint64 `json:"last_seq"`
			ESKs    uint64 `json:"esks"`
		} `json:"log"`
	}{ESKs: make([]esk, 0, len(page.ESKs)), Total: page.Total, More: page.More}
	out.Log.Events, out.Log.LastSeq, out.Log.ESKs = page.Events, page.LastSeq, page.AllESKs
	for _, e := range page.ESKs {
		item := esk{ESK: e.ESK, Count: e.Count, LastSeq: e.LastSeq}
		if !e.LastTime.IsZero() {
			t := e.LastTime.UTC()
			item.LastTime = &t
		}
		out.ESKs = append(out.ESKs, item)
	}
	if page.More && len(page.ESKs) > 0 {
		out.Next = page.ESKs[len(page.ESKs)-1].ESK
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// pathESK returns the ESK the path names, or an error for 400.
func pathESK(r *http.Request) (string, error) {
	e := r.PathValue("esk")
	return e, transport.ValidateESK(e)
}

// uintParam reads an optional non-negative integer parameter.
func uintParam(q url.Values, name string) (uint64, bool, error) {
	s := q.Get(name)
	if s == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, httpapi.BadRequest("%s %q: want a whole number from 0", name, s)
	}
	return n, true, nil
}

func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) {
	name, err := pathESK(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	q := r.URL.Query()
	limit, err := httpapi.PageLimit(q, DefaultPageSize, MaxPageSize)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	from, byIndex, err := uintParam(q, "from")
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	seq, bySeq, err := uintParam(q, "seq")
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if byIndex && bySeq {
		h.api.WriteError(w, r, httpapi.BadRequest("from (an index) and seq (a stream position) both say where the page starts: give one"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	last := !byIndex && !bySeq
	if bySeq {
		// The page starts at the first event at or after the position; a
		// position past the ESK's last event shows its last page.
		ev, err := h.log.Seek(ctx, name, seq)
		switch {
		case err == nil:
			from = ev.Index
		case errors.Is(err, transport.ErrNotFound):
			last = true
		default:
			h.api.WriteError(w, r, err)
			return
		}
	}
	if last {
		n, err := h.log.Count(ctx, name)
		if err != nil {
			h.api.WriteError(w, r, err)
			return
		}
		from = n - min(n, uint64(limit))
	}
	evs, count, err := h.log.Range(ctx, name, from, limit)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	out := struct {
		ESK        string  `json:"esk"`
		Count      uint64  `json:"count"`
		From       uint64  `json:"from"`
		Events     []event `json:"events"`
		MoreBefore bool    `json:"more_before"`
		MoreAfter  bool    `json:"more_after"`
	}{ESK: name, Count: count, From: from, Events: make([]event, 0, len(evs))}
	for _, ev := range evs {
		out.Events = append(out.Events, toEvent(ev, PreviewBytes))
	}
	out.MoreBefore = from > 0 && count > 0
	out.MoreAfter = from+uint64(len(evs)) < count
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) getEvent(w http.ResponseWriter, r *http.Request) {
	name, err := pathESK(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	s := r.PathValue("index")
	index, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		h.api.WriteError(w, r, httpapi.BadRequest("index %q: want a whole number from 0", s))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	ev, err := h.log.Get(ctx, name, index)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		ESK string `json:"esk"`
		event
	}{name, toEvent(ev, 0)})
}
