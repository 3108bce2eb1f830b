package kvhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// The JSON shapes of the API. They are the API's own, so that the store's
// Go types can change without changing what clients see.
type (
	position struct {
		ESK   string `json:"esk"`
		Index uint64 `json:"index"`
		Seq   uint64 `json:"seq"`
	}
	table struct {
		Name     string   `json:"name"`
		CRDT     kv.Type  `json:"crdt"`
		Keys     int      `json:"keys"`
		Ops      uint64   `json:"ops"`
		Rejected uint64   `json:"rejected"`
		Declared position `json:"declared"`
	}
	value struct {
		Table  string          `json:"table"`
		Key    string          `json:"key"`
		CRDT   kv.Type         `json:"crdt"`
		Exists bool            `json:"exists"`
		Value  json.RawMessage `json:"value"`
		Meta   json.RawMessage `json:"meta"`
	}
	rejection struct {
		Position position `json:"position"`
		Table    string   `json:"table"`
		Reason   string   `json:"reason"`
		// Data is the rejected event's payload as text when it is UTF-8,
		// else DataBase64 holds it.
		Data       string `json:"data,omitempty"`
		DataBase64 []byte `json:"data_base64,omitempty"`
	}
)

func toPosition(p transport.Position) position {
	return position{ESK: p.ESK, Index: p.Index, Seq: p.Seq}
}

func toTable(t kv.TableInfo) table {
	return table{Name: t.Name, CRDT: t.Type, Keys: t.Keys, Ops: t.Ops, Rejected: t.Rejected, Declared: toPosition(t.Declared)}
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
	out := rejection{Position: toPosition(r.Position), Table: r.Table, Reason: r.Reason}
	if utf8.Valid(r.Data) {
		out.Data = string(r.Data)
	} else {
		out.DataBase64 = r.Data
	}
	return out
}

func (h *Handler) listTables(w http.ResponseWriter, r *http.Request) {
	infos := h.store.Tables()
	out := make([]table, 0, len(infos))
	for _, t := range infos {
		out = append(out, toTable(t))
	}
	writeJSON(w, http.StatusOK, struct {
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
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toTable(t))
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
	if err := h.decodeBody(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	switch {
	case req.Name == "":
		h.writeError(w, r, badRequest(`missing "name"`))
		return
	case req.CRDT == "":
		h.writeError(w, r, badRequest(`missing "crdt" (one of %s)`, typeNames()))
		return
	case !req.CRDT.Valid():
		h.writeError(w, r, badRequest(`unknown "crdt" %q (one of %s)`, req.CRDT, typeNames()))
		return
	}
	if err := kv.ValidateTable(req.Name); err != nil {
		h.writeError(w, r, err)
		return
	}
	if req.Name == kv.ConfigTable {
		h.writeError(w, r, badRequest("%s is reserved: it declares the other tables", kv.ConfigTable))
		return
	}
	if t, ok := h.store.Table(req.Name); ok {
		if t.Type != req.CRDT {
			h.writeError(w, r, fmt.Errorf("%w: table %q is %s, not %s", kv.ErrTableType, req.Name, t.Type, req.CRDT))
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Table   table `json:"table"`
			Created bool  `json:"created"`
		}{toTable(t), false})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
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
	writeJSON(w, http.StatusCreated, struct {
		Table    table    `json:"table"`
		Position position `json:"position"`
		Created  bool     `json:"created"`
	}{toTable(t), toPosition(pos), true})
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	limit := DefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			h.writeError(w, r, badRequest("limit %q: want a number from 1 to %d", s, MaxPageSize))
			return
		}
		limit = n
	}
	withValues := false
	if s := q.Get("values"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			h.writeError(w, r, badRequest("values %q: want true or false", s))
			return
		}
		withValues = b
	}
	keys, more, err := h.store.Keys(t.Name, q.Get("after"), limit)
	if err != nil {
		h.writeError(w, r, err)
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
				h.writeError(w, r, err)
				return
			}
			page.Values = append(page.Values, toValue(v))
		}
	}
	writeJSON(w, http.StatusOK, page)
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	v, err := h.store.Get(t.Name, r.PathValue("key"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toValue(v))
}

func (h *Handler) postOp(w http.ResponseWriter, r *http.Request) {
	t, err := h.lookupTable(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var op kv.Op
	if err := h.decodeBody(w, r, &op); err != nil {
		h.writeError(w, r, err)
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
	}{Position: toPosition(pos)}
	if v, err := h.store.Get(t.Name, op.Key); err == nil {
		resp.Value = ptr(toValue(v))
	}
	writeJSON(w, http.StatusOK, resp)
}

// writeWriteError answers a write that failed. When the op reached the
// log (pos.Seq is set: the fold rejected it, or it was not seen applied in
// time) the body gives its position.
func (h *Handler) writeWriteError(w http.ResponseWriter, r *http.Request, pos transport.Position, err error) {
	if pos.Seq == 0 {
		h.writeError(w, r, err)
		return
	}
	status := statusOf(err)
	msg := fmt.Sprintf("written at %s index %d (seq %d) but not applied: %v", pos.ESK, pos.Index, pos.Seq, err)
	if errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("written at %s index %d (seq %d) but not applied within %v", pos.ESK, pos.Index, pos.Seq, h.opts.Timeout)
	}
	if status == http.StatusInternalServerError {
		h.opts.Logger.Error("kv http: write", "seq", pos.Seq, "err", err)
	}
	writeJSON(w, status, errorBody{Error: msg, Position: ptr(toPosition(pos))})
}

func (h *Handler) listRejections(w http.ResponseWriter, r *http.Request) {
	// Not only declared tables have rejections: an op on an undeclared
	// table is one.
	rejs := h.store.Rejections(r.URL.Query().Get("table"))
	out := make([]rejection, 0, len(rejs))
	for _, rej := range rejs {
		out = append(out, toRejection(rej))
	}
	writeJSON(w, http.StatusOK, struct {
		Rejections []rejection `json:"rejections"`
	}{out})
}

func ptr[T any](v T) *T { return &v }
