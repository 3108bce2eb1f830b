package fold_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
)

// TestWatchersInTheFold: watchers of a key and of every key see the
// changes a fold notifies, in order, before a Wait for their position
// returns; a removed one sees no more.
func TestWatchersInTheFold(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	c := newTally(1)
	var a, all []int64 // appended in the fold, read after Wait
	removeA := c.watchers.Add("t.a", func(v int64) { a = append(a, v) })
	c.watchers.Add("", func(v int64) { all = append(all, v) })
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{fold.LogSource(l, "t.>")}}, nil)
	write(t, l, "t.a", "1")
	write(t, l, "t.b", "5")
	p := write(t, l, "t.a", "2")
	if err := f.Wait(ctxT(t), 0, p.Seq); err != nil {
		t.Fatal(err)
	}
	c.mu.RLock()
	if fmt.Sprint(a, all) != "[1 3] [1 5 3]" {
		t.Errorf("watchers saw %v and %v, want [1 3] and [1 5 3]", a, all)
	}
	c.mu.RUnlock()
	removeA()
	p = write(t, l, "t.a", "4")
	if err := f.Wait(ctxT(t), 0, p.Seq); err != nil {
		t.Fatal(err)
	}
	c.mu.RLock()
	if fmt.Sprint(a, all) != "[1 3] [1 5 3 7]" {
		t.Errorf("after remove: %v and %v", a, all)
	}
	c.mu.RUnlock()
}

// TestWatchChannels: a channel watcher never holds up Notify: changes
// that find it full are dropped and counted in the next one delivered;
// it is closed by its ctx or by Close, and one made after Close is
// closed from the start.
func TestWatchChannels(t *testing.T) {
	t.Parallel()
	type change struct {
		v       int
		dropped uint64
	}
	var w fold.Watchers[change]
	if w.Active() {
		t.Error("active with no watcher")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.Chan(ctx, "k", 2, func(c *change, n uint64) { c.dropped = n })
	other := w.Chan(ctx, "other", 2, nil)
	for v := range 5 {
		w.Notify("k", change{v: v}) // 2 and up find it full
	}
	if got := fmt.Sprint(<-ch, <-ch); got != "{0 0} {1 0}" {
		t.Errorf("delivered %s", got)
	}
	w.Notify("k", change{v: 5})
	if got := <-ch; got != (change{5, 3}) {
		t.Errorf("after three dropped: %+v, want {5 3}", got)
	}
	select {
	case c := <-other:
		t.Errorf("a watcher of another key got %+v", c)
	default:
	}
	cctx, stop := context.WithCancel(ctx)
	gone := w.Chan(cctx, "", 1, nil)
	stop()
	select {
	case _, ok := <-gone:
		if ok {
			t.Error("a change on a cancelled watcher")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the watcher did not close its channel")
	}
	w.Notify("k", change{v: 6}) // no send on the closed channel
	w.Close()
	if _, ok := <-ch; !ok {
		t.Error("the undelivered change was lost before Close")
	}
	if _, ok := <-ch; ok {
		t.Error("open after Close")
	}
	if _, ok := <-w.Chan(ctx, "k", 1, nil); ok {
		t.Error("a channel made after Close is open")
	}
	if w.Active() {
		t.Error("active after Close")
	}
}
