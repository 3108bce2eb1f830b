package machine

import (
	"container/heap"
	"slices"
	"strings"

	"github.com/detbus/detbus/hlc"
)

// index keeps the live tasks (pending or claimed) of a queue apart from
// the finished ones, so that a claim looks at few tasks:
//
//   - ready holds the pending tasks without a not_before, claimable at
//     any time, in claim order (a heap; entries of tasks that left are
//     dropped when they reach the top);
//   - timed holds the other live tasks, pending with a not_before or
//     claimed, sorted by the time from which a claim can take them (the
//     not_before, or the end of the lease), then id. The tasks a claim at
//     a time could take from it are a prefix.
//
// Neither changes what any operation does: [Queue.best] picks the same
// task as a scan of every task would, since order is a total order.
type index struct {
	ready   readyHeap
	inReady map[*Task]bool
	timed   []timedEntry
	timedAt map[*Task]hlc.Timestamp // the time each task of timed is filed under
}

// timedEntry is a task of timed with the time it is filed under.
type timedEntry struct {
	at hlc.Timestamp
	t  *Task
}

func newIndex() index {
	return index{inReady: map[*Task]bool{}, timedAt: map[*Task]hlc.Timestamp{}}
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
		i, _ := x.find(timedEntry{at, t})
		x.timed = slices.Delete(x.timed, i, i+1)
		delete(x.timedAt, t)
	}
	if timed {
		e := timedEntry{from(t), t}
		i, _ := x.find(e)
		x.timed = slices.Insert(x.timed, i, e)
		x.timedAt[t] = e.at
	}
}

// find returns where e is or would be in timed: by time, then id.
func (x *index) find(e timedEntry) (int, bool) {
	return slices.BinarySearchFunc(x.timed, e, func(a, b timedEntry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.t.ID, b.t.ID)
	})
}

// due returns the timed tasks a claim at now may take (those filed at
// or before now), and the first one filed after now, if any.
func (x *index) due(now hlc.Timestamp) ([]timedEntry, *timedEntry) {
	n, _ := slices.BinarySearchFunc(x.timed, now, func(e timedEntry, now hlc.Timestamp) int {
		if e.at.Compare(now) <= 0 {
			return -1
		}
		return 1
	})
	if n < len(x.timed) {
		return x.timed[:n], &x.timed[n]
	}
	return x.timed[:n], nil
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
