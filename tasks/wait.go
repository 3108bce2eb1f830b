package tasks

import (
	"context"
	"errors"
	"fmt"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// withTimeout applies the log's default timeout to a ctx without deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.log.Config().Timeout)
}

// waitErr turns the error of a wait for what into the client's.
func (c *Client) waitErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fold.ErrClosed):
		return ErrClosed
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		if ferr := c.f.Err(); ferr != nil {
			return fmt.Errorf("tasks: waiting for %s: %w (fold: %v)", what, err, ferr)
		}
		return fmt.Errorf("tasks: waiting for %s: %w", what, err)
	}
	return err
}

// Wait waits until the fold has applied the task event at pos (and so
// every task event before it in log order): after Wait, reads reflect a
// write that returned pos. pos must be the position of a task event, as
// the write methods return; for any other position Wait waits for the
// next task event after it. Without a deadline on ctx, Wait gives up
// after the log's timeout.
//
// Errors: ctx's error (wrapped, with the fold's last error if it is
// failing); ErrClosed.
func (c *Client) Wait(ctx context.Context, pos transport.Position) error {
	if c.f.Applied(0) >= pos.Seq {
		return nil
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.waitErr(fmt.Sprintf("%s at seq %d", pos.ESK, pos.Seq), c.f.Wait(ctx, 0, pos.Seq))
}

// Sync waits until the fold has applied every task event that the log
// holds when Sync is called, whoever wrote it: reads after Sync reflect
// every write acknowledged before it.
//
// Errors: ErrUnavailable when the log cannot be read; as [Client.Wait].
func (c *Client) Sync(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	err := c.f.Sync(ctx)
	if errors.Is(err, transport.ErrUnavailable) {
		return err
	}
	return c.waitErr("the task fold to catch up", err)
}

// Outcome waits for the task event at pos to be applied, as [Client.Wait]
// does, and returns what it did. The client keeps the outcomes of the
// newest Options.KeepOutcomes task events it applied; a snapshot that
// Open restored holds none.
//
// Errors: as Wait; ErrOutcomeNotKept when the event's outcome is no
// longer kept, the event is covered by the snapshot Open restored, or
// pos is not a task event.
func (c *Client) Outcome(ctx context.Context, pos transport.Position) (machine.Outcome, error) {
	if err := c.Wait(ctx, pos); err != nil {
		return machine.Outcome{}, err
	}
	o, ok := c.f.Outcome(0, pos.Seq)
	if !ok {
		return machine.Outcome{}, fmt.Errorf("%w: %s index %d (seq %d)", ErrOutcomeNotKept, pos.ESK, pos.Index, pos.Seq)
	}
	return o, nil
}

// Applied returns the stream sequence of the last task event the fold
// applied, or that the snapshot Open restored covers (0 before the
// first).
func (c *Client) Applied() uint64 { return c.f.Applied(0) }
