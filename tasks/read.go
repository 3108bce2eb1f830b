package tasks

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// Rejection is a task event the machine rejected. It changed nothing,
// and the events after it were applied as usual.
type Rejection struct {
	transport.Position
	Time hlc.Timestamp // the event's time
	Op   string        // the op, when it is a string
	// Reason is the machine's reason (see the machine package's list).
	Reason string
	// Malformed is true when the operation itself is faulty (bad JSON, an
	// unknown op or field, a bad field value, a time before the epoch),
	// false when a well-formed operation was refused in the queue's state
	// (a claim that lost, a report after the lease expired, an op before
	// create_queue).
	Malformed bool
	// Data is the event's payload, cut at 1 KiB.
	Data []byte
}

// QueueInfo summarises a queue.
type QueueInfo struct {
	Name    string
	Created bool           // a create_queue was accepted
	Config  machine.Config // valid when Created
	Events  uint64         // events of the queue's ESK applied
	// Tasks counts the queue's tasks by state.
	Tasks map[machine.State]int
	// Malformed and Refused count the rejected events of each kind.
	Malformed, Refused uint64
	// Clamped counts the events whose HLC time lay further than
	// transport.MaxEventSkew from the time the stream stored them: their
	// time is the stored time.
	Clamped uint64
}

// Queues lists every queue that has events, sorted by name.
func (c *Client) Queues() []QueueInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []QueueInfo
	for _, qs := range c.queues {
		if c.counts[ESKPrefix+qs.name] > 0 {
			out = append(out, c.info(qs))
		}
	}
	slices.SortFunc(out, func(a, b QueueInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Queue summarises one queue.
//
// Errors: ErrNoQueue when the queue has no events.
func (c *Client) Queue(name string) (QueueInfo, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	qs := c.queues[name]
	if qs == nil || c.counts[ESKPrefix+name] == 0 {
		return QueueInfo{}, fmt.Errorf("%w: %q", ErrNoQueue, name)
	}
	return c.info(qs), nil
}

func (c *Client) info(qs *queueState) QueueInfo {
	in := QueueInfo{Name: qs.name, Events: c.counts[ESKPrefix+qs.name], Tasks: map[machine.State]int{},
		Malformed: qs.malformed.Count(), Refused: qs.refused.Count(), Clamped: qs.clamped}
	in.Config, in.Created = qs.q.Config()
	for _, t := range qs.q.Tasks() {
		in.Tasks[t.State]++
	}
	return in
}

// created returns a created queue. c.mu is held.
func (c *Client) created(name string) (*queueState, error) {
	qs := c.queues[name]
	if qs == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoQueue, name)
	}
	if _, ok := qs.q.Config(); !ok {
		return nil, fmt.Errorf("%w: %q is not created", ErrNoQueue, name)
	}
	return qs, nil
}

// List returns copies of the queue's tasks in the given states (all
// when none are given), in enqueue order.
//
// Errors: ErrNoQueue.
func (c *Client) List(queue string, states ...machine.State) ([]machine.Task, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	qs, err := c.created(queue)
	if err != nil {
		return nil, err
	}
	var out []machine.Task
	for _, t := range qs.q.Tasks() {
		if len(states) == 0 || slices.Contains(states, t.State) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b machine.Task) int { return cmp.Compare(a.EnqueueIndex, b.EnqueueIndex) })
	return out, nil
}

// Dead returns the queue's dead letters, in enqueue order.
//
// Errors: ErrNoQueue.
func (c *Client) Dead(queue string) ([]machine.Task, error) {
	return c.List(queue, machine.StateDead)
}

// Show returns a copy of one task.
//
// Errors: ErrNoQueue, ErrNoTask.
func (c *Client) Show(queue, id string) (machine.Task, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	qs, err := c.created(queue)
	if err != nil {
		return machine.Task{}, err
	}
	t, ok := qs.q.Task(id)
	if !ok {
		return machine.Task{}, fmt.Errorf("%w: %q in queue %q", ErrNoTask, id, queue)
	}
	return t, nil
}

// Claimable returns copies of the tasks a claim at time at could win,
// best first (see [machine.Queue.Claimable]).
//
// Errors: ErrNoQueue.
func (c *Client) Claimable(queue string, at time.Time) ([]machine.Task, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	qs, err := c.created(queue)
	if err != nil {
		return nil, err
	}
	return qs.q.Claimable(wallTimestamp(at)), nil
}

// Rejections returns the kept rejected events of a queue, oldest first:
// the malformed ones and the refused ones (see [Rejection.Malformed]).
// [QueueInfo] counts them all.
//
// Errors: ErrNoQueue when the queue has no events.
func (c *Client) Rejections(queue string) (malformed, refused []Rejection, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	qs := c.queues[queue]
	if qs == nil || c.counts[ESKPrefix+queue] == 0 {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoQueue, queue)
	}
	return qs.malformed.List(), qs.refused.List(), nil
}

// wallTimestamp is the HLC timestamp of a wall time.
func wallTimestamp(t time.Time) hlc.Timestamp {
	return hlc.Timestamp{WallTime: t.UnixNano()}
}
