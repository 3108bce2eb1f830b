package kvhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// position is a position in the log, as both APIs of a node show it.
type position = httpapi.Position

// The JSON shapes of the API. They are the API's own, so that the store's
// Go types can change without changing what clients see.
type (
	table struct {
		Name     string   `json:"name"`
		CRDT     kv.Type  `json:"crdt"`
		Keys     int      `json:"keys"`
		Ops      uint64   `json:"ops"`
		Rejected uint64   `json:"rejected"`
		Clamped  uint64   `json:"clamped"`
		Declared position `json:"declared"`
	}
	value struct {
		Table  string          `json:"table"`
		Key    string          `json:"key"`
		CRDT   kv.Type         `json:"crdt"`
		Exists bool            `json:"exists"`
		Value  json.RawMessage `json:"value"`
		// Meta is null for a key with no CRDT state, and left out of
		// the values of the events stream, which carry none.
		Meta json.RawMessage `json:"meta,omitempty"`
	}
	rejection struct {
		Position position `json:"position"`
		Table    string   `json:"table"`
		Reason   string   `json:"reason"`
		// The rejected event's payload.
		httpapi.Data
	}
)

func toTable(t kv.TableInfo) table {
	return table{Name: t.Name, CRDT: t.Type, Keys: t.Keys, Ops: t.Ops, Rejected: t.Rejected, Clamped: t.Clamped, Declared: httpapi.ToPosition(t.Declared)}
}

func toValue(v kv.Value) value {
	out := value{Table: v.Table, Key: v.Key, CRDT: v.Type, Exists: v.Exists, Value: v.Value, Meta: v.Meta}
	if len(out.Value) == 0 {
		out.Value = json.RawMessage("null")
	}
	if len(out.Meta) == 0 {
		out.Meta = json.RawMessage("null")
	}
	return out
}

func toRejection(r kv.Rejection) rejection {
	return rejection{Position: httpapi.ToPosition(r.Position), Table: r.Table, Reason: r.Reason, Data: httpapi.ToData(r.Data)}
}

func (h *Handler) listTables(w http.ResponseWriter, r *http.Request) {
	infos := h.store.Tables()
	out := make([]table, 0, len(infos))
	for _, t := range infos {
		out = append(out, toTable(t))
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Tables  []table `json:"tables"`
		Applied uint64  `json:"applied"`
	}{out, h.store.Applied()})
}

// lookupTable returns the table named by the path, or an error for 404.
func (h *Handler) lookupTable(r *http.Request) (kv.TableInfo, error) {
	name := r.PathValue("table")
	t, ok := h.store.Table(name)
	if !ok {
		return t, fmt.Errorf("%w: %q", kv.ErrNoTable, name)
	}
	return t, nil
}

func (h *Handler) getTable(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toTable(t))
}

func typeNames() string {
	names := make([]string, len(kv.Types))
	for i, t := range kv.Types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

func (h *Handler) createTable(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string  `json:"name"`
		CRDT kv.Type `json:"crdt"`
	}
	if err := h.api.DecodeBody(w, r, &req); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	switch {
	case req.Name == "":
		h.api.WriteError(w, r, httpapi.BadRequest(`missing "name"`))
		return
	case req.CRDT == "":
		h.api.WriteError(w, r, httpapi.BadRequest(`missing "crdt" (one of %s)`, typeNames()))
		return
	case !req.CRDT.Valid():
		h.api.WriteError(w, r, httpapi.BadRequest(`unknown "crdt" %q (one of %s)`, req.CRDT, typeNames()))
		return
	}
	if err := kv.ValidateTable(req.Name); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if req.Name == kv.ConfigTable {
		h.api.WriteError(w, r, httpapi.BadRequest("%s is reserved: it declares the other tables", kv.ConfigTable))
		return
	}
	if t, ok := h.store.Table(req.Name); ok {
		if t.Type != req.CRDT {
			h.api.WriteError(w, r, fmt.Errorf("%w: table %q is %s, not %s", kv.ErrTableType, req.Name, t.Type, req.CRDT))
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, struct {
			Table   table `json:"table"`
			Created bool  `json:"created"`
		}{toTable(t), false})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	if err := httpapi.MayWrite(r, kv.ESKPrefix+kv.ConfigTable); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	// CreateTable returns once this store has folded the declaration, or
	// with the fold's verdict: another declaration of the name may have
	// landed first.
	pos, err := h.store.CreateTable(ctx, req.Name, req.CRDT)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	t, ok := h.store.Table(req.Name)
	if !ok {
		h.writeWriteError(w, r, pos, fmt.Errorf("%w: %q not declared after its declaration was applied", kv.ErrNoTable, req.Name))
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, struct {
		Table    table    `json:"table"`
		Position position `json:"position"`
		Created  bool     `json:"created"`
	}{toTable(t), httpapi.ToPosition(pos), true})
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
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
	withValues := false
	if s := q.Get("values"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			h.api.WriteError(w, r, httpapi.BadRequest("values %q: want true or false", s))
			return
		}
		withValues = b
	}
	keys, more, err := h.store.Keys(t.Name, q.Get("after"), limit)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	page := struct {
		Table  string   `json:"table"`
		Keys   []string `json:"keys"`
		More   bool     `json:"more"`
		Next   string   `json:"next,omitempty"`
		Values []value  `json:"values,omitempty"`
	}{Table: t.Name, Keys: keys, More: more}
	if page.Keys == nil {
		page.Keys = []string{}
	}
	if more && len(keys) > 0 {
		page.Next = keys[len(keys)-1]
	}
	if withValues {
		page.Values = make([]value, 0, len(keys))
		for _, k := range keys {
			v, err := h.store.Get(t.Name, k)
			if err != nil {
				// Keys are never forgotten, only emptied: a key listed a
				// moment ago is still there, perhaps with Exists false.
				h.api.WriteError(w, r, err)
				return
			}
			page.Values = append(page.Values, toValue(v))
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	v, err := h.store.Get(t.Name, r.PathValue("key"))
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toValue(v))
}

func (h *Handler) postOp(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if err := httpapi.MayWrite(r, kv.ESKPrefix+t.Name); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	var op kv.Op
	if err := h.api.DecodeBody(w, r, &op); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	// Do returns once this store has folded the op, or with the fold's
	// rejection.
	pos, err := h.store.Do(ctx, t.Name, op)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	resp := struct {
		Position position `json:"position"`
		Value    *value   `json:"value,omitempty"`
	}{Position: httpapi.ToPosition(pos)}
	if v, err := h.store.Get(t.Name, op.Key); err == nil {
		resp.Value = ptr(toValue(v))
	}
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

// writeWriteError answers a write that failed. When the op reached the
// log (pos.Seq is set: the fold rejected it, or it was not seen applied in
// time) the body gives its position.
func (h *Handler) writeWriteError(w http.ResponseWriter, r *http.Request, pos transport.Position, err error) {
	if pos.Seq == 0 {
		h.api.WriteError(w, r, err)
		return
	}
	status := h.api.Status(err)
	msg := fmt.Sprintf("written at %s index %d (seq %d) but not applied: %v", pos.ESK, pos.Index, pos.Seq, err)
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("written at %s index %d (seq %d) but not applied within %v", pos.ESK, pos.Index, pos.Seq, h.opts.Timeout)
	}
	if status == http.StatusInternalServerError {
		h.opts.Logger.Error("kv http: write", "seq", pos.Seq, "err", err)
	}
	httpapi.WriteJSON(w, status, httpapi.ErrorBody{Error: msg, Position: ptr(httpapi.ToPosition(pos))})
}

func (h *Handler) listRejections(w http.ResponseWriter, r *http.Request) {
	// Not only declared tables have rejections: an op on an undeclared
	// table is one.
	rejs := h.store.Rejections(r.URL.Query().Get("table"))
	out := make([]rejection, 0, len(rejs))
	for _, rej := range rejs {
		out = append(out, toRejection(rej))
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Rejections []rejection `json:"rejections"`
	}{out})
}

func ptr[T any](v T) *T { return &v }
