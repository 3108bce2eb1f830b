package machine

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/detbus/detbus/hlc"
)

// Event is one event of a queue's ESK, in log order.
type Event struct {
	// Index is the event's position in its ESK. An enqueue records it as
	// the task's enqueue index.
	Index uint64
	// Time is the event's HLC time: the machine's "now" for this event.
	Time hlc.Timestamp
	// Data is the operation, a JSON object.
	Data []byte
}

// Kind says what an event did.
type Kind string

// The kinds of [Outcome].
const (
	KindCreated   Kind = "created"
	KindEnqueued  Kind = "enqueued"
	KindDuplicate Kind = "duplicate"
	KindClaimed   Kind = "claimed"
	KindHeartbeat Kind = "heartbeat"
	KindCompleted Kind = "completed"
	KindRetry     Kind = "retry"
	KindDead      Kind = "dead"
	KindCancelled Kind = "cancelled"
	KindRequeued  Kind = "requeued"
	KindRejected  Kind = "rejected"
	KindBatch     Kind = "batch"
)

// Outcome is the result of applying one event. Zero fields do not apply
// to the kind; see the package documentation for which fields each kind
// sets.
type Outcome struct {
	Index      uint64        `json:"index"`
	Op         string        `json:"op,omitzero"`
	Kind       Kind          `json:"kind"`
	TaskID     string        `json:"task,omitzero"`
	Worker     string        `json:"worker,omitzero"`
	Attempt    int           `json:"attempt,omitzero"`
	LeaseUntil hlc.Timestamp `json:"lease_until,omitzero"`
	NotBefore  hlc.Timestamp `json:"not_before,omitzero"`
	Reason     string        `json:"reason,omitzero"`
	// Malformed is set on a rejection of the event as a whole: it does
	// not decode, or its time is before the Unix epoch.
	Malformed bool `json:"malformed,omitzero"`
	// Ops are the outcomes of a batch's operations, in order.
	Ops []Outcome `json:"ops,omitzero"`
}

// State is where a task is in its life.
type State string

// The states of a [Task].
const (
	StatePending   State = "pending"
	StateClaimed   State = "claimed"
	StateCompleted State = "completed"
	StateDead      State = "dead"
	StateCancelled State = "cancelled"
)

// Task is one task of a queue. Its JSON form is the one snapshots use.
type Task struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Priority orders claims without id: higher first.
	Priority int64 `json:"priority,omitzero"`
	// EnqueueIndex is the index of the enqueue event; it breaks ties of
	// priority, earlier first.
	EnqueueIndex uint64          `json:"enqueue_index"`
	Payload      json.RawMessage `json:"payload"`
	// NotBefore is when a pending task becomes due; zero is always.
	NotBefore hlc.Timestamp `json:"not_before,omitzero"`
	// Attempts counts the claims since the enqueue or the last requeue;
	// the current or last attempt is number Attempts.
	Attempts int `json:"attempts,omitzero"`
	// Worker holds the current attempt, or held the last one; it is
	// empty before the first claim and after a requeue.
	Worker string `json:"worker,omitzero"`
	// Lease is the lease duration of the current attempt, which a
	// heartbeat extends by; LeaseUntil is when it expires. Both are zero
	// unless the task is claimed.
	Lease      time.Duration `json:"-"`
	LeaseUntil hlc.Timestamp `json:"lease_until,omitzero"`
	LastError  string        `json:"last_error,omitzero"`
	// Result is the result of the completing attempt: set only when the
	// task is completed.
	Result json.RawMessage `json:"result,omitzero"`
}

// MaxAttemptsLimit bounds max_attempts and the attempt numbers that
// operations may name.
const MaxAttemptsLimit = 1_000_000

// Config is a queue's configuration, fixed by its create_queue.
type Config struct {
	Lease       time.Duration // default lease of a claim
	MaxAttempts int           // claims a task may have before it is dead
	Backoff     Backoff
}

// Backoff is the delay before a failed attempt's task is due again.
type Backoff struct {
	Initial time.Duration
	Factor  int64
	Max     time.Duration
}

// DefaultConfig is the configuration of a create_queue with no fields: a
// 30s lease, 5 attempts, and a backoff of 1s doubling up to 1m.
func DefaultConfig() Config {
	return Config{
		Lease:       30 * time.Second,
		MaxAttempts: 5,
		Backoff:     Backoff{Initial: time.Second, Factor: 2, Max: time.Minute},
	}
}

// Delay returns the backoff after failed attempt n (n >= 1):
// Initial * Factor^(n-1), capped at Max, in integer arithmetic.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && d < b.Max && d > 0 && b.Factor > 1; i++ {
		if d > b.Max/time.Duration(b.Factor) {
			return b.Max
		}
		d *= time.Duration(b.Factor)
	}
	return min(d, b.Max)
}

// validate returns the reason c is not a valid configuration, or "".
func (c Config) validate() string {
	switch {
	case c.Lease <= 0:
		return "lease must be positive"
	case c.MaxAttempts < 1:
		return "max_attempts must be positive"
	case c.MaxAttempts > MaxAttemptsLimit:
		return "max_attempts out of range"
	case c.Backoff.Initial < 0:
		return "backoff.initial must not be negative"
	case c.Backoff.Factor < 1:
		return "backoff.factor must be positive"
	case c.Backoff.Max < c.Backoff.Initial:
		return "backoff.max must not be less than backoff.initial"
	}
	return ""
}

// Queue is the state of one queue. The zero value is not ready; use
// [New]. A Queue is used by one goroutine at a time, except that its
// read methods (Name, Config, Task, Tasks, Claimable, Due, Snapshot,
// Freeze) change nothing and may run at once in several goroutines while
// no Apply or Restore runs.
type Queue struct {
	name  string
	cfg   *Config // nil until create_queue
	tasks map[string]*Task
	live  index // the pending and claimed tasks
}

// New returns the state of queue name before its first event.
func New(name string) *Queue {
	return &Queue{name: name, tasks: map[string]*Task{}, live: newIndex()}
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Config returns the queue's configuration, and false before the queue
// is created.
func (q *Queue) Config() (Config, bool) {
	if q.cfg == nil {
		return Config{}, false
	}
	return *q.cfg, true
}

// Task returns a copy of task id.
func (q *Queue) Task(id string) (Task, bool) {
	t, ok := q.tasks[id]
	if !ok {
		return Task{}, false
	}
	return t.clone(), true
}

// Tasks returns copies of all tasks, sorted by id.
func (q *Queue) Tasks() []Task {
	out := make([]Task, 0, len(q.tasks))
	for _, t := range q.tasks {
		out = append(out, t.clone())
	}
	slices.SortFunc(out, func(a, b Task) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Claimable returns copies of the tasks a claim at time at could win,
// best first: by priority (higher first), then enqueue index, then id.
func (q *Queue) Claimable(at hlc.Timestamp) []Task {
	var out []Task
	for _, t := range q.tasks {
		if q.claimable(t, at) {
			out = append(out, t.clone())
		}
	}
	slices.SortFunc(out, func(a, b Task) int { return order(&a, &b) })
	return out
}

// claimable reports whether a claim at now could win t: t is pending and
// due, or its lease has expired and it has attempts left.
func (q *Queue) claimable(t *Task, now hlc.Timestamp) bool {
	switch t.State {
	case StatePending:
		return !now.Less(t.NotBefore)
	case StateClaimed:
		return !now.Less(t.LeaseUntil) && t.Attempts < q.cfg.MaxAttempts
	}
	return false
}

// best returns the best task a claim at now could win, or nil: the best
// ready task or a better claimable timed one. order is a total order on
// tasks with distinct ids.
func (q *Queue) best(now hlc.Timestamp) *Task {
	b := q.live.first()
	due, _ := q.live.due(now)
	for _, e := range due {
		if q.claimable(e.t, now) && (b == nil || order(e.t, b) < 0) {
			b = e.t
		}
	}
	return b
}

// order compares tasks for claiming: higher priority first, then earlier
// enqueue index, then smaller id.
func order(a, b *Task) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.EnqueueIndex, b.EnqueueIndex); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func (t *Task) clone() Task {
	c := *t
	c.Payload = slices.Clone(t.Payload)
	c.Result = slices.Clone(t.Result)
	return c
}

// after returns t plus d (d >= 0) in wall time, keeping t's logical part
// and saturating at the largest wall time.
func after(t hlc.Timestamp, d time.Duration) hlc.Timestamp {
	w := t.WallTime + int64(d)
	if w < t.WallTime {
		w = math.MaxInt64
	}
	return hlc.Timestamp{WallTime: w, Logical: t.Logical}
}
