package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// snapshot is the encoded state of a queue.
type snapshot struct {
	Queue  string        `json:"queue"`
	Config *configRecord `json:"config"` // null until the queue is created
	Tasks  []taskRecord  `json:"tasks"`
}

type configRecord struct {
	Lease       string        `json:"lease"`
	MaxAttempts int           `json:"max_attempts"`
	Backoff     backoffRecord `json:"backoff"`
}

type backoffRecord struct {
	Initial string `json:"initial"`
	Factor  int64  `json:"factor"`
	Max     string `json:"max"`
}

// taskRecord is a task with its lease duration as a duration string.
type taskRecord struct {
	Task
	Lease string `json:"lease,omitzero"`
}

// Snapshot encodes the state as canonical JSON: tasks sorted by id,
// durations in [time.Duration.String] form, zero fields omitted, JSON
// values compact and unescaped. Equal states give identical bytes.
func (q *Queue) Snapshot() ([]byte, error) { return q.Freeze().Snapshot() }

// Frozen is a copy of a queue's state, taken by [Queue.Freeze], to be
// encoded while the queue goes on.
type Frozen struct {
	name  string
	cfg   *Config
	tasks []Task // in no order
}

// Freeze copies the state for [Frozen.Snapshot], which then gives the
// bytes [Queue.Snapshot] gives now. It copies the tasks into one slice
// and nothing else (payloads and results, which no operation writes
// into, are shared), and neither sorts nor encodes: a caller that holds
// off the queue's writer while it copies holds it off briefly. It is a
// read method.
func (q *Queue) Freeze() *Frozen {
	f := &Frozen{name: q.name, tasks: make([]Task, 0, len(q.tasks))}
	if q.cfg != nil {
		c := *q.cfg
		f.cfg = &c
	}
	for _, t := range q.tasks {
		f.tasks = append(f.tasks, *t)
	}
	return f
}

// Snapshot encodes the frozen state as [Queue.Snapshot] does. It may run
// in several goroutines at once.
func (f *Frozen) Snapshot() ([]byte, error) {
	s := snapshot{Queue: f.name, Tasks: []taskRecord{}}
	if c := f.cfg; c != nil {
		s.Config = &configRecord{
			Lease:       c.Lease.String(),
			MaxAttempts: c.MaxAttempts,
			Backoff: backoffRecord{
				Initial: c.Backoff.Initial.String(),
				Factor:  c.Backoff.Factor,
				Max:     c.Backoff.Max.String(),
			},
		}
	}
	order := make([]*Task, len(f.tasks))
	for i := range f.tasks {
		order[i] = &f.tasks[i]
	}
	slices.SortFunc(order, func(a, b *Task) int { return strings.Compare(a.ID, b.ID) })
	// The tasks are encoded one by one into the list that encoding the
	// snapshot with none leaves open: the bytes of encoding them all at
	// once, without a second copy of every task.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("machine: snapshot: %w", err)
	}
	b.Truncate(b.Len() - len("]}\n"))
	for i, t := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		r := taskRecord{Task: *t}
		if t.Lease != 0 {
			r.Lease = t.Lease.String()
		}
		if err := enc.Encode(r); err != nil {
			return nil, fmt.Errorf("machine: snapshot: task %q: %w", t.ID, err)
		}
		b.Truncate(b.Len() - 1) // the newline
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

// Restore replaces the state with one encoded by [Queue.Snapshot] for a
// queue of the same name. It accepts only a state the operations can
// reach, with its tasks sorted by id and no field it does not know, and
// refuses anything else with an error, leaving the state as it was. The
// bytes need not be canonical (spacing, a zero field written out): the
// state they encode is, so a restored queue snapshots to the canonical
// bytes. Integrity of the bytes is the caller's to check (a hash).
func (q *Queue) Restore(data []byte) error {
	var s snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("machine: restore: malformed snapshot: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("machine: restore: malformed snapshot: data after the JSON object")
	}
	if s.Queue != q.name {
		return fmt.Errorf("machine: restore: snapshot of queue %q, not %q", s.Queue, q.name)
	}
	nq := New(q.name)
	if s.Config != nil {
		c, err := s.Config.config()
		if err != nil {
			return err
		}
		nq.cfg = &c
	} else if len(s.Tasks) > 0 {
		return errors.New("machine: restore: tasks in a queue that is not created")
	}
	prev := ""
	for _, r := range s.Tasks {
		t := r.Task
		if r.Lease != "" {
			d, err := time.ParseDuration(r.Lease)
			if err != nil {
				return fmt.Errorf("machine: restore: task %q: bad lease %q", t.ID, r.Lease)
			}
			t.Lease = d
		}
		if reason := nq.check(&t); reason != "" {
			return fmt.Errorf("machine: restore: task %q: %s", t.ID, reason)
		}
		if _, dup := nq.tasks[t.ID]; dup {
			return fmt.Errorf("machine: restore: task %q given twice", t.ID)
		}
		if t.ID < prev {
			return fmt.Errorf("machine: restore: task %q after %q: the tasks are not sorted by id", t.ID, prev)
		}
		prev = t.ID
		nq.tasks[t.ID] = &t
		nq.live.reindex(&t)
	}
	*q = *nq
	return nil
}

func (r *configRecord) config() (Config, error) {
	var c Config
	var errs [3]error
	c.Lease, errs[0] = time.ParseDuration(r.Lease)
	c.Backoff.Initial, errs[1] = time.ParseDuration(r.Backoff.Initial)
	c.Backoff.Max, errs[2] = time.ParseDuration(r.Backoff.Max)
	if err := errors.Join(errs[:]...); err != nil {
		return Config{}, fmt.Errorf("machine: restore: config: %w", err)
	}
	c.MaxAttempts, c.Backoff.Factor = r.MaxAttempts, r.Backoff.Factor
	if reason := c.validate(); reason != "" {
		return Config{}, errors.New("machine: restore: config: " + reason)
	}
	return c, nil
}

// check returns what makes t a task no sequence of operations leads to,
// or "".
func (q *Queue) check(t *Task) string {
	claimed := t.State == StateClaimed
	switch {
	case t.ID == "":
		return "empty id"
	case t.State != StatePending && !claimed && t.State != StateCompleted &&
		t.State != StateDead && t.State != StateCancelled:
		return fmt.Sprintf("unknown state %q", t.State)
	case t.Payload == nil:
		return "missing payload"
	case t.Attempts < 0 || t.Attempts > q.cfg.MaxAttempts:
		return fmt.Sprintf("attempts %d out of range", t.Attempts)
	case (t.Worker == "") != (t.Attempts == 0):
		return "a worker is recorded if and only if there was an attempt"
	case claimed != (t.Lease > 0) || claimed != !t.LeaseUntil.IsZero():
		return "a lease is recorded if and only if the task is claimed"
	case (t.State == StateCompleted) != (t.Result != nil):
		return "a result is recorded if and only if the task is completed"
	case t.State == StatePending && t.Attempts == q.cfg.MaxAttempts:
		return "pending with no attempt left"
	case t.State == StateDead && t.Attempts != q.cfg.MaxAttempts:
		return "dead with attempts left"
	case (claimed || t.State == StateCompleted) && t.Attempts == 0:
		return string(t.State) + " with no attempt"
	}
	return ""
}
