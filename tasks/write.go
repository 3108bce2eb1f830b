package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// ValidateQueue reports whether name makes a valid queue ESK
// ("tasks.<name>"): one or more dot-separated tokens of printable ASCII,
// no wildcard. The error wraps ErrInvalid and names the fault.
func ValidateQueue(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty queue name", ErrInvalid)
	}
	if err := transport.ValidateESK(ESKPrefix + name); err != nil {
		return fmt.Errorf("%w: queue name %q: %v", ErrInvalid, name, err)
	}
	return nil
}

// NewTask is a task to enqueue.
type NewTask struct {
	// ID names the task in its queue and is the idempotency key: an
	// enqueue of an ID the queue has ever had changes nothing (outcome
	// "duplicate"), so retrying an enqueue whose outcome is unknown is
	// safe. Required.
	ID string
	// Payload is any JSON value; nil is null.
	Payload json.RawMessage
	// Priority orders claims without id: higher first (default 0).
	Priority int64
	// NotBefore delays the task until then (zero: due at once).
	NotBefore time.Time
}

// Create writes a create_queue with the configuration cfg, taken as it
// is: start from [machine.DefaultConfig]. Creating a queue again with
// the same configuration changes nothing; with another, it is refused.
//
// Errors: as [Client.Append].
func (c *Client) Create(ctx context.Context, queue string, cfg machine.Config) (transport.Position, error) {
	return c.Append(ctx, queue, machine.Op{Op: machine.OpCreateQueue, Config: cfg})
}

// Enqueue writes an enqueue of t.
//
// Errors: as [Client.Append].
func (c *Client) Enqueue(ctx context.Context, queue string, t NewTask) (transport.Position, error) {
	op := machine.Op{Op: machine.OpEnqueue, ID: t.ID, Payload: t.Payload, Priority: t.Priority}
	if !t.NotBefore.IsZero() {
		op.NotBefore = wallTimestamp(t.NotBefore)
	}
	return c.Append(ctx, queue, op)
}

// Cancel writes a cancel of task id: a pending, claimed or dead task ends
// (its holder's later reports are refused, and a [Worker] cancels the
// handler's context with ErrLeaseLost).
//
// Errors: as [Client.Append].
func (c *Client) Cancel(ctx context.Context, queue, id string) (transport.Position, error) {
	return c.Append(ctx, queue, machine.Op{Op: machine.OpCancel, ID: id})
}

// Requeue writes a requeue of dead task id: it becomes pending, due at
// once, with its attempts reset.
//
// Errors: as [Client.Append].
func (c *Client) Requeue(ctx context.Context, queue, id string) (transport.Position, error) {
	return c.Append(ctx, queue, machine.Op{Op: machine.OpRequeue, ID: id})
}

// Append writes any operation to a queue, stamped with the log's HLC
// time, and returns where it landed once the log has acknowledged it. It
// does not wait for the fold: use [Client.Wait] to read the write, or
// [Client.Outcome] to learn what it did (refused or not).
//
// Errors: ErrInvalid (nothing written) for a bad queue name or an
// operation that [machine.Decode] refuses, naming the reason; ErrClosed;
// the log's errors (transport.ErrUnavailable: the event may have been
// stored).
func (c *Client) Append(ctx context.Context, queue string, op machine.Op) (transport.Position, error) {
	data, err := c.encode(queue, op)
	if err != nil {
		return transport.Position{}, err
	}
	return c.log.Write(ctx, ESKPrefix+queue, data, transport.WithHLC())
}

// publishRaw writes operations built by a worker (valid by construction)
// to a queue, stamped with the log's HLC time, without waiting for the
// acknowledgement. It does not learn the event's index: a worker needs
// an op's stream position, to find its outcome, not its index.
func (c *Client) publishRaw(ctx context.Context, queue string, data []byte) (*transport.PendingPublish, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	p, err := c.log.PublishAsync(ctx, ESKPrefix+queue, data, transport.WithHLC())
	if err != nil {
		return nil, fmt.Errorf("tasks: write to queue %q: %w", queue, err)
	}
	return p, nil
}

func (c *Client) encode(queue string, op machine.Op) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ValidateQueue(queue); err != nil {
		return nil, err
	}
	data, err := op.MarshalJSON()
	if err != nil {
		what := op.Op
		if op.ID != "" {
			what += " " + fmt.Sprintf("%q", op.ID)
		}
		return nil, fmt.Errorf("%w: %s on queue %q: %v", ErrInvalid, what, queue, err)
	}
	return data, nil
}
