package taskshttp

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// states lists a task's states in the order of its life.
var states = []machine.State{machine.StatePending, machine.StateClaimed, machine.StateCompleted, machine.StateDead, machine.StateCancelled}

// The JSON shapes of the API. They are the API's own, so that the
// client's Go types can change without changing what clients see.
type (
	position struct {
		ESK   string `json:"esk"`
		Index uint64 `json:"index"`
		Seq   uint64 `json:"seq"`
	}
	backoff struct {
		Initial string `json:"initial"`
		Factor  int64  `json:"factor"`
		Max     string `json:"max"`
	}
	config struct {
		Lease       string  `json:"lease"`
		MaxAttempts int     `json:"max_attempts"`
		Backoff     backoff `json:"backoff"`
	}
	queue struct {
		Name    string  `json:"name"`
		Created bool    `json:"created"`
		Config  *config `json:"config"` // null until created
		Events  uint64  `json:"events"`
		// Tasks counts tasks by state, every state listed.
		Tasks     map[machine.State]int `json:"tasks"`
		Total     int                   `json:"total"`
		Rejected  uint64                `json:"rejected"`
		Malformed uint64                `json:"malformed"`
		Refused   uint64                `json:"refused"`
	}
	taskSummary struct {
		ID           string        `json:"id"`
		State        machine.State `json:"state"`
		Priority     int64         `json:"priority"`
		EnqueueIndex uint64        `json:"enqueue_index"`
		Attempts     int           `json:"attempts"`
		Worker       string        `json:"worker"`
		LeaseUntil   *time.Time    `json:"lease_until"`
		NotBefore    *time.Time    `json:"not_before"`
		LastError    string        `json:"last_error"`
	}
	taskDetail struct {
		Queue string `json:"queue"`
		taskSummary
		Lease   string          `json:"lease"` // of the current attempt, "" unless claimed
		Payload json.RawMessage `json:"payload"`
		Result  json.RawMessage `json:"result"`
	}
	rejection struct {
		Position  position   `json:"position"`
		Time      *time.Time `json:"time"`
		Op        string     `json:"op"`
		Reason    string     `json:"reason"`
		Malformed bool       `json:"malformed"`
		// Data is the rejected event's payload (cut at 1 KiB) as text
		// when it is UTF-8, else DataBase64 holds it.
		Data       string `json:"data,omitempty"`
		DataBase64 []byte `json:"data_base64,omitempty"`
	}
)

func toPosition(p transport.Position) position {
	return position{ESK: p.ESK, Index: p.Index, Seq: p.Seq}
}

// toTime is an HLC timestamp's wall time in UTC, nil for the zero
// timestamp.
func toTime(t hlc.Timestamp) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := time.Unix(0, t.WallTime).UTC()
	return &u
}

func toConfig(c machine.Config) *config {
	return &config{Lease: c.Lease.String(), MaxAttempts: c.MaxAttempts,
		Backoff: backoff{Initial: c.Backoff.Initial.String(), Factor: c.Backoff.Factor, Max: c.Backoff.Max.String()}}
}

func toQueue(in tasks.QueueInfo) queue {
	q := queue{Name: in.Name, Created: in.Created, Events: in.Events, Tasks: make(map[machine.State]int, len(states)),
		Rejected: in.Malformed + in.Refused, Malformed: in.Malformed, Refused: in.Refused}
	if in.Created {
		q.Config = toConfig(in.Config)
	}
	for _, s := range states {
		q.Tasks[s] = 0
	}
	for s, n := range in.Tasks {
		q.Tasks[s] = n
		q.Total += n
	}
	return q
}

func toSummary(t machine.Task) taskSummary {
	return taskSummary{ID: t.ID, State: t.State, Priority: t.Priority, EnqueueIndex: t.EnqueueIndex,
		Attempts: t.Attempts, Worker: t.Worker, LeaseUntil: toTime(t.LeaseUntil), NotBefore: toTime(t.NotBefore),
		LastError: t.LastError}
}

func toDetail(queue string, t machine.Task) taskDetail {
	d := taskDetail{Queue: queue, taskSummary: toSummary(t), Payload: t.Payload, Result: t.Result}
	if t.Lease > 0 {
		d.Lease = t.Lease.String()
	}
	if len(d.Payload) == 0 {
		d.Payload = json.RawMessage("null")
	}
	if len(d.Result) == 0 {
		d.Result = json.RawMessage("null")
	}
	return d
}

func toRejection(r tasks.Rejection) rejection {
	out := rejection{Position: toPosition(r.Position), Time: toTime(r.Time), Op: r.Op, Reason: r.Reason, Malformed: r.Malformed}
	if utf8.Valid(r.Data) {
		out.Data = string(r.Data)
	} else {
		out.DataBase64 = r.Data
	}
	return out
}

// ---- reads

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
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
	writeJSON(w, http.StatusOK, struct {
		Queues  []queue `json:"queues"`
		Applied uint64  `json:"applied"`
	}{out, applied})
}

func (h *Handler) getQueue(w http.ResponseWriter, r *http.Request) {
	in, err := h.client.Queue(r.PathValue("queue"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toQueue(in))
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
			return nil, badRequest("state %q: want one or more of %s, separated by commas", part, stateNames())
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
		h.writeError(w, r, err)
		return
	}
	limit := DefaultPageSize
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			h.writeError(w, r, badRequest("limit %q: want a number from 1 to %d", s, MaxPageSize))
			return
		}
		limit = n
	}
	var after uint64
	hasAfter := false
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			h.writeError(w, r, badRequest("after %q: want the enqueue_index of a task (the previous page's next)", s))
			return
		}
		after, hasAfter = n, true
	}
	applied := h.client.Applied()
	list, err := h.client.List(r.PathValue("queue"), sts...)
	if err != nil {
		h.writeError(w, r, err)
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
	writeJSON(w, http.StatusOK, page)
}

func (h *Handler) getTask(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	t, err := h.client.Show(name, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toDetail(name, t))
}

func (h *Handler) listRejections(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	in, err := h.client.Queue(name)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	malformed, refused, err := h.client.Rejections(name)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	all := append(malformed, refused...)
	slices.SortFunc(all, func(a, b tasks.Rejection) int { return cmp.Compare(a.Seq, b.Seq) })
	out := make([]rejection, 0, len(all))
	for _, x := range all {
		out = append(out, toRejection(x))
	}
	writeJSON(w, http.StatusOK, struct {
		Rejections []rejection `json:"rejections"`
		Malformed  uint64      `json:"malformed"`
		Refused    uint64      `json:"refused"`
	}{out, in.Malformed, in.Refused})
}

// ---- writes

// createdQueue returns the named queue if it has been created.
func (h *Handler) createdQueue(name string) (tasks.QueueInfo, error) {
	in, err := h.client.Queue(name)
	if err != nil {
		return in, err
	}
	if !in.Created {
		return in, fmt.Errorf("%w: %q is not created", tasks.ErrNoQueue, name)
	}
	return in, nil
}

func (h *Handler) createQueue(w http.ResponseWriter, r *http.Request) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var fields map[string]json.RawMessage
	if err := decodeJSON(body, &fields); err != nil || fields == nil {
		if err == nil {
			err = badRequest("malformed JSON body: want a JSON object")
		}
		h.writeError(w, r, err)
		return
	}
	var name string
	raw, ok := fields["name"]
	switch {
	case !ok:
		h.writeError(w, r, badRequest(`missing "name"`))
		return
	case json.Unmarshal(raw, &name) != nil:
		h.writeError(w, r, badRequest(`"name" must be a string`))
		return
	}
	if err := tasks.ValidateQueue(name); err != nil {
		h.writeError(w, r, err)
		return
	}
	// The other fields are create_queue's: let the machine judge them.
	delete(fields, "name")
	if _, ok := fields["op"]; ok {
		h.writeError(w, r, badRequest(`unknown field "op"`))
		return
	}
	fields["op"] = json.RawMessage(strconv.Quote(machine.OpCreateQueue))
	data, err := json.Marshal(fields)
	if err != nil {
		h.writeError(w, r, badRequest("malformed JSON body: %v", err))
		return
	}
	op, err := machine.Decode(data)
	if err != nil {
		h.writeError(w, r, badRequest("queue %q: %v", name, err))
		return
	}
	respond := func(status int, pos *position, created bool) {
		in, err := h.client.Queue(name)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, status, struct {
			Queue    queue     `json:"queue"`
			Position *position `json:"position,omitempty"`
			Created  bool      `json:"created"`
		}{toQueue(in), pos, created})
	}
	if in, err := h.client.Queue(name); err == nil && in.Created {
		if in.Config != op.Config {
			h.writeError(w, r, conflict("queue %q is already created with another config (%s)", name, describeConfig(in.Config)))
			return
		}
		respond(http.StatusOK, nil, false)
		return
	}
	pos, o, err := h.write(r, name, op)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	p := toPosition(pos)
	switch o.Kind {
	case machine.KindCreated:
		respond(http.StatusCreated, &p, true)
	case machine.KindDuplicate:
		respond(http.StatusOK, &p, false)
	default:
		h.writeWriteError(w, r, pos, conflict("create_queue %q was %s: %s", name, o.Kind, o.Reason))
	}
}

func describeConfig(c machine.Config) string {
	return fmt.Sprintf("lease %v, max_attempts %d, backoff %v×%d up to %v", c.Lease, c.MaxAttempts, c.Backoff.Initial, c.Backoff.Factor, c.Backoff.Max)
}

// write appends op to queue, waits until the client has folded it and
// returns what it did. The wait and the write share Options.Timeout.
func (h *Handler) write(r *http.Request, queue string, op machine.Op) (transport.Position, machine.Outcome, error) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	pos, err := h.client.Append(ctx, queue, op)
	if err != nil {
		return pos, machine.Outcome{}, err
	}
	o, err := h.client.Outcome(ctx, pos)
	if err != nil {
		return pos, o, fmt.Errorf("the operation was written but its outcome is unknown: %w", err)
	}
	return pos, o, nil
}

func (h *Handler) enqueue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("queue")
	var req struct {
		ID        string          `json:"id"`
		Payload   json.RawMessage `json:"payload"`
		Priority  int64           `json:"priority"`
		NotBefore *time.Time      `json:"not_before"`
		Delay     string          `json:"delay"`
	}
	if err := h.decodeBody(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	if _, err := h.createdQueue(name); err != nil {
		h.writeError(w, r, err)
		return
	}
	op := machine.Op{Op: machine.OpEnqueue, ID: req.ID, Payload: req.Payload, Priority: req.Priority}
	var due time.Time
	switch {
	case req.ID == "":
		h.writeError(w, r, badRequest(`missing "id"`))
		return
	case req.NotBefore != nil && req.Delay != "":
		h.writeError(w, r, badRequest(`give "not_before" or "delay", not both`))
		return
	case req.NotBefore != nil:
		due = *req.NotBefore
	case req.Delay != "":
		d, err := time.ParseDuration(req.Delay)
		if err != nil || d < 0 {
			h.writeError(w, r, badRequest(`"delay" %q: want a duration that is not negative, such as "30s"`, req.Delay))
			return
		}
		if d > 0 {
			due = time.Now().Add(d)
		}
	}
	if !due.IsZero() {
		if y := due.Year(); y < 1970 || y > 2261 {
			h.writeError(w, r, badRequest("the task would be due at %s: want a time from 1970 to 2261", due.Format(time.RFC3339)))
			return
		}
		op.NotBefore = hlc.FromTime(due)
	}
	if t, err := h.client.Show(name, req.ID); err == nil {
		// Enqueue is idempotent by id: nothing to write.
		writeJSON(w, http.StatusOK, struct {
			Task    taskDetail `json:"task"`
			Created bool       `json:"created"`
		}{toDetail(name, t), false})
		return
	}
	pos, o, err := h.write(r, name, op)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	status := http.StatusCreated
	switch o.Kind {
	case machine.KindEnqueued:
	case machine.KindDuplicate:
		status = http.StatusOK
	default:
		h.writeWriteError(w, r, pos, conflict("enqueue of %q was %s: %s", req.ID, o.Kind, o.Reason))
		return
	}
	t, err := h.client.Show(name, req.ID)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	writeJSON(w, status, struct {
		Task     taskDetail `json:"task"`
		Position position   `json:"position"`
		Created  bool       `json:"created"`
	}{toDetail(name, t), toPosition(pos), status == http.StatusCreated})
}

// action writes a cancel or a requeue of the task named by the path,
// unless allowed, given its state, refuses it at once.
func (h *Handler) action(w http.ResponseWriter, r *http.Request, opName string, allowed func(machine.Task) error, want machine.Kind) {
	name, id := r.PathValue("queue"), r.PathValue("id")
	t, err := h.client.Show(name, id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := allowed(t); err != nil {
		h.writeError(w, r, err)
		return
	}
	pos, o, err := h.write(r, name, machine.Op{Op: opName, ID: id})
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	if o.Kind != want && o.Kind != machine.KindDuplicate {
		h.writeWriteError(w, r, pos, conflict("%s of %q was %s: %s", opName, id, o.Kind, o.Reason))
		return
	}
	if t, err = h.client.Show(name, id); err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Task     taskDetail   `json:"task"`
		Position position     `json:"position"`
		Outcome  machine.Kind `json:"outcome"`
	}{toDetail(name, t), toPosition(pos), o.Kind})
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, machine.OpCancel, func(t machine.Task) error {
		if t.State == machine.StateCompleted {
			return conflict("task %q is completed: there is nothing to cancel", t.ID)
		}
		return nil
	}, machine.KindCancelled)
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, machine.OpRequeue, func(t machine.Task) error {
		if t.State != machine.StateDead {
			return conflict("task %q is %s, not dead: only dead letters are retried", t.ID, t.State)
		}
		return nil
	}, machine.KindRequeued)
}
