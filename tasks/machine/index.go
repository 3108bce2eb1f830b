package machine

import "container/heap"

// index keeps the live tasks (pending or claimed) of a queue apart from
// the finished ones, so that a claim looks at the live tasks only:
//
//   - ready holds the pending tasks without a not_before, claimable at
//     any time, in claim order (a heap; entries of tasks that left are
//     dropped when they reach the top);
//   - timed holds the other live tasks: pending with a not_before, and
//     claimed. Whether they are claimable depends on the time, so a claim
//     scans them; they are the tasks in flight and the delayed ones.
//
// Neither changes what any operation does: [Queue.best] picks the same
// task as a scan of every task would, since order is a total order.
type index struct {
	ready   readyHeap
	inReady map[*Task]bool
	timed   map[string]*Task
}

func newIndex() index {
	return index{inReady: map[*Task]bool{}, timed: map[string]*Task{}}
}

// reindex files t where its state puts it.
func (x *index) reindex(t *Task) {
	live := t.State == StatePending || t.State == StateClaimed
	ready := t.State == StatePending && t.NotBefore.IsZero()
	switch {
	case ready && !x.inReady[t]:
		x.inReady[t] = true
		heap.Push(&x.ready, t)
	case !ready && x.inReady[t]:
		delete(x.inReady, t)
	}
	if live && !ready {
		x.timed[t.ID] = t
	} else {
		delete(x.timed, t.ID)
	}
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
