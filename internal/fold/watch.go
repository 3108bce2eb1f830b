package fold

import (
	"context"
	"sync"
	"sync/atomic"
)

// Watchers hands the changes a fold makes to whoever watches them, by
// key (a table, a queue). The client calls [Watchers.Notify] from its
// Apply, under its lock, so a watcher sees every change after it was
// added, in order, and before any Wait for the change's position
// returns. The zero value is ready to use; it is safe for concurrent use.
type Watchers[C any] struct {
	mu     sync.RWMutex
	byKey  map[string][]*watcher[C] // "" watches every key
	n      atomic.Int64
	closed bool
}

type watcher[C any] struct {
	fn   func(C)
	done func() // for a channel watcher: closes it
}

// Active reports whether anyone watches, so that Apply builds changes
// only then.
func (w *Watchers[C]) Active() bool { return w.n.Load() > 0 }

// Add calls fn with every change of key ("" for every key) notified from
// now on, until remove is called; after remove returns, fn is not called
// again. fn runs in the fold with the client's lock held: it must be
// quick and must not call the client. After Close, Add registers nothing.
func (w *Watchers[C]) Add(key string, fn func(C)) (remove func()) {
	x := &watcher[C]{fn: fn}
	if !w.add(key, x) {
		return func() {}
	}
	return func() { w.remove(key, x) }
}

func (w *Watchers[C]) add(key string, x *watcher[C]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.byKey == nil {
		w.byKey = map[string][]*watcher[C]{}
	}
	w.byKey[key] = append(w.byKey[key], x)
	w.n.Add(1)
	return true
}

// remove drops x, and reports whether it was there.
func (w *Watchers[C]) remove(key string, x *watcher[C]) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.byKey[key]
	for i, y := range list {
		if y == x {
			list = append(list[:i:i], list[i+1:]...)
			if len(list) == 0 {
				delete(w.byKey, key)
			} else {
				w.byKey[key] = list
			}
			w.n.Add(-1)
			return true
		}
	}
	return false
}

// Chan returns a channel of the changes of key ("" for every key) from
// now on, closed when ctx is done or at Close. The fold never waits for
// it: it holds buffer changes, and a change that finds it full is
// dropped; the number dropped since the last delivery is handed to
// dropped with the next change delivered, which records it in the
// change (nil: not recorded).
func (w *Watchers[C]) Chan(ctx context.Context, key string, buffer int, dropped func(c *C, n uint64)) <-chan C {
	ch := make(chan C, buffer)
	var lost uint64 // touched by fn only, which runs one call at a time
	x := &watcher[C]{fn: func(c C) {
		if dropped != nil {
			dropped(&c, lost)
		}
		select {
		case ch <- c:
			lost = 0
		default:
			lost++
		}
	}}
	x.done = func() { close(ch) }
	if !w.add(key, x) {
		close(ch)
		return ch
	}
	context.AfterFunc(ctx, func() {
		// Only the one that removes it closes it: ctx or Close.
		if w.remove(key, x) {
			close(ch)
		}
	})
	return ch
}

// Notify calls the watchers of key and those of every key with c.
func (w *Watchers[C]) Notify(key string, c C) {
	if w.n.Load() == 0 {
		return
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, x := range w.byKey[key] {
		x.fn(c)
	}
	if key != "" {
		for _, x := range w.byKey[""] {
			x.fn(c)
		}
	}
}

// Close removes every watcher, closing the channels of [Watchers.Chan],
// and makes later ones closed from the start.
func (w *Watchers[C]) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for _, list := range w.byKey {
		for _, x := range list {
			if x.done != nil {
				x.done()
			}
		}
	}
	w.byKey = nil
	w.n.Store(0)
}
