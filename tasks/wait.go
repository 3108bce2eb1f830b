package tasks

import (
	"container/heap"
	"context"
	"fmt"

	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// seqWaiter is a Wait for the fold to apply seq.
type seqWaiter struct {
	seq uint64
	ch  chan struct{}
}

// seqHeap orders Wait calls by the sequence they wait for.
type seqHeap []*seqWaiter

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(*seqWaiter)) }
func (h *seqHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return w
}

// wake releases the waiters on advanced. c.wmu is held.
func (c *Client) wake() {
	if c.taken {
		close(c.advanced)
		c.advanced, c.taken = make(chan struct{}), false
	}
}

// await waits until cond, checked under the read lock of the folded
// state, holds; it checks again whenever the fold applies an event.
func (c *Client) await(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for {
		c.wmu.Lock()
		ch := c.advanced
		c.taken = true
		c.wmu.Unlock()
		c.mu.RLock()
		ok, foldErr := cond(), c.foldErr
		c.mu.RUnlock()
		switch {
		case ok:
			return nil
		case c.closed.Load():
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if foldErr != nil {
				return fmt.Errorf("tasks: waiting for %s: %w (fold: %v)", what, ctx.Err(), foldErr)
			}
			return fmt.Errorf("tasks: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// withTimeout applies the log's default timeout to a ctx without deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.log.Config().Timeout)
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
	if c.applied.Load() >= pos.Seq {
		return nil
	}
	c.wmu.Lock()
	switch {
	case c.applied.Load() >= pos.Seq:
		c.wmu.Unlock()
		return nil
	case c.closed.Load():
		c.wmu.Unlock()
		return ErrClosed
	}
	w := &seqWaiter{seq: pos.Seq, ch: make(chan struct{})}
	heap.Push(&c.waiters, w)
	c.wmu.Unlock()
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	select {
	case <-w.ch:
		if c.applied.Load() < pos.Seq {
			return ErrClosed
		}
		return nil
	case <-ctx.Done():
		// w stays queued until the fold passes it or the client closes.
		return c.await(ctx, fmt.Sprintf("%s at seq %d", pos.ESK, pos.Seq), func() bool { return c.applied.Load() >= pos.Seq })
	}
}

// Sync waits until the fold has applied every task event that the log
// holds when Sync is called, whoever wrote it: reads after Sync reflect
// every write acknowledged before it.
//
// Errors: ErrUnavailable when the log cannot be counted; as [Client.Wait].
func (c *Client) Sync(ctx context.Context) error {
	counts, err := c.log.Counts(ctx, ESKPrefix+">")
	if err != nil {
		return err
	}
	return c.await(ctx, "the task fold to catch up", func() bool {
		for esk, n := range counts {
			if c.counts[esk] < n {
				return false
			}
		}
		return true
	})
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
	c.omu.Lock()
	o, ok := c.outcomes[pos.Seq]
	c.omu.Unlock()
	if !ok {
		return machine.Outcome{}, fmt.Errorf("%w: %s index %d (seq %d)", ErrOutcomeNotKept, pos.ESK, pos.Index, pos.Seq)
	}
	return o, nil
}

// Applied returns the stream sequence of the last task event the fold
// applied, or that the snapshot Open restored covers (0 before the
// first).
func (c *Client) Applied() uint64 { return c.applied.Load() }
