package machine

import (
	"container/heap"
	"strings"

	"github.com/google/btree"

	"github.com/detbus/detbus/hlc"
)

// index keeps the live tasks (pending or claimed) of a queue apart from
// the finished ones, so that a claim looks at few tasks:
//
//   - ready holds the pending tasks without a not_before, claimable at
//     any time, in claim order (a heap; entries of tasks that left are
//     dropped when they reach the top);
//   - timed holds the other live tasks, pending with a not_before or
//     claimed, in a B-tree sorted by the time from which a claim can take
//     them (the not_before, or the end of the lease), then id, so that
//     filing and removing a task cost O(log n) however many are in
//     flight. The tasks a claim at a time could take from it come first.
//
// Neither changes what any operation does: [Queue.best] picks the same
// task as a scan of every task would, since order is a total order.
type index struct {
	ready   readyHeap
	inReady map[*Task]bool
	timed   *btree.BTreeG[timedEntry]
	timedAt map[*Task]hlc.Timestamp // the time each task of timed is filed under
}

// timedEntry is a task of timed with the time it is filed under.
type timedEntry struct {
	at hlc.Timestamp
	t  *Task
}

func newIndex() index {
	return index{inReady: map[*Task]bool{}, timed: btree.NewG(16, timedLess), timedAt: map[*Task]hlc.Timestamp{}}
}

// timedLess orders timed: by time, then id.
func timedLess(a, b timedEntry) bool {
	if c := a.at.Compare(b.at); c != 0 {
		return c < 0
	}
	return strings.Compare(a.t.ID, b.t.ID) < 0
}

// from is when a claim can take a timed task.
func from(t *Task) hlc.Timestamp {
	if t.State == StateClaimed {
		return t.LeaseUntil
	}
	return t.NotBefore
}

// reindex files t where its state puts it.
func (x *index) reindex(t *Task) {
	ready := t.State == StatePending && t.NotBefore.IsZero()
	timed := !ready && (t.State == StatePending || t.State == StateClaimed)
	switch {
	case ready && !x.inReady[t]:
		x.inReady[t] = true
		heap.Push(&x.ready, t)
	case !ready && x.inReady[t]:
		delete(x.inReady, t)
	}
	at, filed := x.timedAt[t]
	if filed && timed && at == from(t) {
		return
	}
	if filed {
		x.timed.Delete(timedEntry{at, t})
		delete(x.timedAt, t)
	}
	if timed {
		e := timedEntry{from(t), t}
		x.timed.ReplaceOrInsert(e)
		x.timedAt[t] = e.at
	}
}

// due returns the timed tasks a claim at now may take (those filed at
// or before now), in order, and the first one filed after now, if any.
func (x *index) due(now hlc.Timestamp) ([]timedEntry, *timedEntry) {
	var due []timedEntry
	var next *timedEntry
	x.timed.Ascend(func(e timedEntry) bool {
		if e.at.Compare(now) > 0 {
			next = &e
			return false
		}
		due = append(due, e)
		return true
	})
	return due, next
}

// first returns the best ready task, or nil.
func (x *index) first() *Task {
	for len(x.ready) > 0 {
		if t := x.ready[0]; x.inReady[t] {
			return t
		}
		heap.Pop(&x.ready)
	}
	return nil
}

// readyHeap orders tasks for claiming, best first.
type readyHeap []*Task

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return order(h[i], h[j]) < 0 }
func (h readyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)        { *h = append(*h, x.(*Task)) }
func (h *readyHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}
