package fold

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
)

// cursor is how far a fold has applied one source, and who waits for it
// to move.
type cursor struct {
	// folded is the sequence of the last event applied, under the
	// client's Mu; applied is the same once the hold is over and the
	// event's outcome kept, which is what waits look at.
	folded  uint64
	applied atomic.Uint64

	mu      sync.Mutex
	waiters waitHeap
	nwait   atomic.Int64 // len(waiters), read without mu by the fold
	closed  bool
}

// waiter is a Wait for a cursor to reach seq.
type waiter struct {
	seq uint64
	ch  chan struct{} // closed when released: reached, or the fold closed
	at  int           // index in the heap, -1 once removed
}

// waitHeap orders waiters by the sequence they wait for.
type waitHeap []*waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.at = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.at = -1
	return w
}

// advance publishes seq as applied and releases the waiters it satisfies.
func (c *cursor) advance(seq uint64) {
	c.applied.Store(seq)
	// A Wait counts itself in nwait before it reads applied: either it
	// sees seq, or this load sees it and releases it below.
	if c.nwait.Load() == 0 {
		return
	}
	c.mu.Lock()
	for len(c.waiters) > 0 && c.waiters[0].seq <= seq {
		close(heap.Pop(&c.waiters).(*waiter).ch)
		c.nwait.Add(-1)
	}
	c.mu.Unlock()
}

// wait returns once applied reaches seq.
func (c *cursor) wait(ctx context.Context, seq uint64) error {
	if c.applied.Load() >= seq {
		return nil
	}
	c.mu.Lock()
	c.nwait.Add(1)
	if c.applied.Load() >= seq {
		c.nwait.Add(-1)
		c.mu.Unlock()
		return nil
	}
	if c.closed {
		c.nwait.Add(-1)
		c.mu.Unlock()
		return ErrClosed
	}
	w := &waiter{seq: seq, ch: make(chan struct{})}
	heap.Push(&c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		c.mu.Lock()
		if w.at >= 0 {
			heap.Remove(&c.waiters, w.at)
			c.nwait.Add(-1)
		}
		c.mu.Unlock()
		if c.applied.Load() >= seq {
			return nil
		}
		return ctx.Err()
	}
	if c.applied.Load() >= seq {
		return nil
	}
	return ErrClosed
}

// close releases every waiter and makes later waits for what is not
// applied return ErrClosed.
func (c *cursor) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, w := range c.waiters {
		w.at = -1
		close(w.ch)
	}
	c.nwait.Add(-int64(len(c.waiters)))
	c.waiters = nil
}
