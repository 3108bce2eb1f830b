package taskshttp

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

// The handlers that read: they answer from what the client has folded
// and write nothing to the log.

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Applied uint64 `json:"applied"`
	}{h.client.Applied()})
}

func (h *Handler) listQueues(w http.ResponseWriter, r *http.Request) {
	// Applied is read first: the queues reflect at least that much.
	applied := h.client.Applied()
	infos := h.client.Queues()
	out := make([]queue, 0, len(infos))
	for _, in := range infos {
		out = append(out, toQueue(in))
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Queues  []queue `json:"queues"`
		Applied uint64  `json:"applied"`
	}{out, applied})
}

func (h *Handler) getQueue(w http.ResponseWriter, r *http.Request) {
	in, err := h.client.Queue(r.PathValue("queue"))
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toQueue(in))
}

// parseStates reads the state parameter: states separated by commas.
func parseStates(s string) ([]machine.State, error) {
	if s == "" {
		return nil, nil
	}
	var out []machine.State
	for _, part := range strings.Split(s, ",") {
		st := machine.State(strings.TrimSpace(part))
		if !slices.Contains(states, st) {
			return nil, httpapi.BadRequest("state %q: want one or more of %s, separated by commas", part, stateNames())
		}
		if !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out, nil
}

func stateNames() string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func (h *Handler) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sts, err := parseStates(q.Get("state"))
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	limit, err := httpapi.PageLimit(q, DefaultPageSize, MaxPageSize)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	var after uint64
	hasAfter := false
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			h.api.WriteError(w, r, httpapi.BadRequest("after %q: want the enqueue_index of a task (the previous page's next)", s))
			return
		}
		after, hasAfter = n, true
	}
	applied := h.client.Applied()
	list, err := h.client.List(r.PathValue("queue"), sts...)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	// The list is in enqueue order.
	start := 0
	if hasAfter {
		start, _ = slices.BinarySearchFunc(list, after+1, func(t machine.Task, i uint64) int { return cmp.Compare(t.EnqueueIndex, i) })
	}
	list = list[start:]
	more := len(list) > limit
	if more {
		list = list[:limit]
	}
	page := struct {
		Tasks   []taskSummary `json:"tasks"`
		More    bool          `json:"more"`
		Next    *uint64       `json:"next,omitempty"`
		Applied uint64        `json:"applied"`
	}{Tasks: make([]taskSummary, 0, len(list)), More: more, Applied: applied}
	for _, t := range list {
		page.Tasks = append(page.Tasks, toSummary(t))
	}
	if more {
		next := list[len(list)-1].EnqueueIndex
		page.Next = &next
	}
	httpapi.WriteJSON(w, http.StatusOK, page)
}

func (h *Handler) getTask(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	t, err := h.client.Show(name, r.PathValue("id"))
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, toDetail(name, t))
}

func (h *Handler) listRejections(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	in, err := h.client.Queue(name)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	malformed, refused, err := h.client.Rejections(name)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	all := append(malformed, refused...)
	slices.SortFunc(all, func(a, b tasks.Rejection) int { return cmp.Compare(a.Seq, b.Seq) })
	out := make([]rejection, 0, len(all))
	for _, x := range all {
		out = append(out, toRejection(x))
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Rejections []rejection `json:"rejections"`
		Malformed  uint64      `json:"malformed"`
		Refused    uint64      `json:"refused"`
	}{out, in.Malformed, in.Refused})
}
