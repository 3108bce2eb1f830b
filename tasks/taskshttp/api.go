package taskshttp

import (
	"encoding/json"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
)

// states lists a task's states in the order of its life.
var states = []machine.State{machine.StatePending, machine.StateClaimed, machine.StateCompleted, machine.StateDead, machine.StateCancelled}

// position is a position in the log, as both APIs of a node show it.
type position = httpapi.Position

// The JSON shapes of the API. They are the API's own, so that the
// client's Go types can change without changing what clients see.
type (
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
		// The rejected event's payload, cut at 1 KiB.
		httpapi.Data
	}
)

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
	return rejection{Position: httpapi.ToPosition(r.Position), Time: toTime(r.Time), Op: r.Op, Reason: r.Reason,
		Malformed: r.Malformed, Data: httpapi.ToData(r.Data)}
}
