package taskshttp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// The handlers that write: each appends an operation to a queue and
// answers once the client has folded it.

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
	body, err := h.api.ReadBody(w, r)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	var fields map[string]json.RawMessage
	if err := httpapi.DecodeJSON(body, &fields); err != nil || fields == nil {
		if err == nil {
			err = httpapi.BadRequest("malformed JSON body: want a JSON object")
		}
		h.api.WriteError(w, r, err)
		return
	}
	var name string
	raw, ok := fields["name"]
	switch {
	case !ok:
		h.api.WriteError(w, r, httpapi.BadRequest(`missing "name"`))
		return
	case json.Unmarshal(raw, &name) != nil:
		h.api.WriteError(w, r, httpapi.BadRequest(`"name" must be a string`))
		return
	}
	if err := tasks.ValidateQueue(name); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	// The other fields are create_queue's: let the machine judge them.
	delete(fields, "name")
	if _, ok := fields["op"]; ok {
		h.api.WriteError(w, r, httpapi.BadRequest(`unknown field "op"`))
		return
	}
	fields["op"] = json.RawMessage(strconv.Quote(machine.OpCreateQueue))
	data, err := json.Marshal(fields)
	if err != nil {
		h.api.WriteError(w, r, httpapi.BadRequest("malformed JSON body: %v", err))
		return
	}
	op, err := machine.Decode(data)
	if err != nil {
		h.api.WriteError(w, r, httpapi.BadRequest("queue %q: %v", name, err))
		return
	}
	respond := func(status int, pos *position, created bool) {
		in, err := h.client.Queue(name)
		if err != nil {
			h.api.WriteError(w, r, err)
			return
		}
		httpapi.WriteJSON(w, status, struct {
			Queue    queue     `json:"queue"`
			Position *position `json:"position,omitempty"`
			Created  bool      `json:"created"`
		}{toQueue(in), pos, created})
	}
	if in, err := h.client.Queue(name); err == nil && in.Created {
		if in.Config != op.Config {
			h.api.WriteError(w, r, httpapi.Conflict("queue %q is already created with another config (%s)", name, describeConfig(in.Config)))
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
	p := httpapi.ToPosition(pos)
	switch o.Kind {
	case machine.KindCreated:
		respond(http.StatusCreated, &p, true)
	case machine.KindDuplicate:
		respond(http.StatusOK, &p, false)
	default:
		h.writeWriteError(w, r, pos, httpapi.Conflict("create_queue %q was %s: %s", name, o.Kind, o.Reason))
	}
}

func describeConfig(c machine.Config) string {
	return fmt.Sprintf("lease %v, max_attempts %d, backoff %v×%d up to %v", c.Lease, c.MaxAttempts, c.Backoff.Initial, c.Backoff.Factor, c.Backoff.Max)
}

// write appends op to queue, waits until the client has folded it and
// returns what it did. The wait and the write share Options.Timeout.
func (h *Handler) write(r *http.Request, queue string, op machine.Op) (transport.Position, machine.Outcome, error) {
	if err := httpapi.MayWrite(r, tasks.ESKPrefix+queue); err != nil {
		return transport.Position{}, machine.Outcome{}, err
	}
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
	if err := h.api.DecodeBody(w, r, &req); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if _, err := h.createdQueue(name); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	op := machine.Op{Op: machine.OpEnqueue, ID: req.ID, Payload: req.Payload, Priority: req.Priority}
	var due time.Time
	switch {
	case req.ID == "":
		h.api.WriteError(w, r, httpapi.BadRequest(`missing "id"`))
		return
	case req.NotBefore != nil && req.Delay != "":
		h.api.WriteError(w, r, httpapi.BadRequest(`give "not_before" or "delay", not both`))
		return
	case req.NotBefore != nil:
		due = *req.NotBefore
	case req.Delay != "":
		d, err := time.ParseDuration(req.Delay)
		if err != nil || d < 0 {
			h.api.WriteError(w, r, httpapi.BadRequest(`"delay" %q: want a duration that is not negative, such as "30s"`, req.Delay))
			return
		}
		if d > 0 {
			due = time.Now().Add(d)
		}
	}
	if !due.IsZero() {
		if y := due.Year(); y < 1970 || y > 2261 {
			h.api.WriteError(w, r, httpapi.BadRequest("the task would be due at %s: want a time from 1970 to 2261", due.Format(time.RFC3339)))
			return
		}
		op.NotBefore = hlc.FromTime(due)
	}
	if t, err := h.client.Show(name, req.ID); err == nil {
		// Enqueue is idempotent by id: nothing to write.
		httpapi.WriteJSON(w, http.StatusOK, struct {
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
		h.writeWriteError(w, r, pos, httpapi.Conflict("enqueue of %q was %s: %s", req.ID, o.Kind, o.Reason))
		return
	}
	t, err := h.client.Show(name, req.ID)
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	httpapi.WriteJSON(w, status, struct {
		Task     taskDetail `json:"task"`
		Position position   `json:"position"`
		Created  bool       `json:"created"`
	}{toDetail(name, t), httpapi.ToPosition(pos), status == http.StatusCreated})
}

// action writes a cancel or a requeue of the task named by the path,
// unless allowed, given its state, refuses it at once.
func (h *Handler) action(w http.ResponseWriter, r *http.Request, opName string, allowed func(machine.Task) error, want machine.Kind) {
	name, id := r.PathValue("queue"), r.PathValue("id")
	t, err := h.client.Show(name, id)
	if err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	if err := allowed(t); err != nil {
		h.api.WriteError(w, r, err)
		return
	}
	pos, o, err := h.write(r, name, machine.Op{Op: opName, ID: id})
	if err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	if o.Kind != want && o.Kind != machine.KindDuplicate {
		h.writeWriteError(w, r, pos, httpapi.Conflict("%s of %q was %s: %s", opName, id, o.Kind, o.Reason))
		return
	}
	if t, err = h.client.Show(name, id); err != nil {
		h.writeWriteError(w, r, pos, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, struct {
		Task     taskDetail   `json:"task"`
		Position position     `json:"position"`
		Outcome  machine.Kind `json:"outcome"`
	}{toDetail(name, t), httpapi.ToPosition(pos), o.Kind})
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, machine.OpCancel, func(t machine.Task) error {
		if t.State == machine.StateCompleted {
			return httpapi.Conflict("task %q is completed: there is nothing to cancel", t.ID)
		}
		return nil
	}, machine.KindCancelled)
}

func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	h.action(w, r, machine.OpRequeue, func(t machine.Task) error {
		if t.State != machine.StateDead {
			return httpapi.Conflict("task %q is %s, not dead: only dead letters are retried", t.ID, t.State)
		}
		return nil
	}, machine.KindRequeued)
}
