package fold

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestOutcomesKeepTheNewest checks the ring against a map of the newest
// keep outcomes, with sequences that skip as another ESK's events do.
func TestOutcomesKeepTheNewest(t *testing.T) {
	for _, keep := range []int{0, 1, 7, 64} {
		r := newOutcomes[uint64](keep)
		var order []uint64
		seq := uint64(0)
		for range 500 {
			seq += 1 + rand.Uint64N(5)
			r.add(seq, seq*10)
			order = append(order, seq)
			kept := map[uint64]bool{}
			for _, s := range order[max(len(order)-keep, 0):] {
				kept[s] = true
			}
			for s := uint64(0); s <= seq+1; s++ {
				o, ok := r.get(s)
				if ok != kept[s] || ok && o != s*10 {
					t.Fatalf("keep %d, after %d: get(%d) = %d, %v; want kept %v", keep, seq, s, o, ok, kept[s])
				}
			}
		}
	}
}

// TestCursorReleasesWaitersInOrder: waits for random positions are
// released when the cursor passes them, not before, whatever the order
// they came in; a wait that gives up is removed; close releases the rest.
func TestCursorReleasesWaitersInOrder(t *testing.T) {
	var c cursor
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var early []uint64
	for range n {
		seq := 1 + rand.Uint64N(1000)
		wg.Go(func() {
			if err := c.wait(context.Background(), seq); err != nil {
				t.Errorf("wait %d: %v", seq, err)
			}
			if got := c.applied.Load(); got < seq {
				mu.Lock()
				early = append(early, seq)
				mu.Unlock()
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() { gaveUp <- c.wait(ctx, 5000) }()
	for c.nwait.Load() < n+1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("a wait that gave up: %v", err)
	}
	for seq := uint64(1); seq <= 1000; seq += 1 + rand.Uint64N(20) {
		c.advance(seq)
	}
	c.advance(1000)
	wg.Wait()
	if len(early) > 0 {
		t.Errorf("released before their position: %v", early)
	}
	if c.nwait.Load() != 0 || len(c.waiters) != 0 {
		t.Errorf("%d (%d) still waiting", c.nwait.Load(), len(c.waiters))
	}
	closed := make(chan error)
	go func() { closed <- c.wait(context.Background(), 2000) }()
	for c.nwait.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.close()
	if err := <-closed; !errors.Is(err, ErrClosed) {
		t.Errorf("a wait at close: %v", err)
	}
	if err := c.wait(context.Background(), 999); err != nil {
		t.Errorf("a wait for a passed position after close: %v", err)
	}
}
