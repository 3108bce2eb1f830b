package fold

import "slices"

// outcomes keeps the outcomes of the newest events of one source, in the
// order they were applied: a ring, so that keeping one costs a store and
// finding one a binary search (sequences grow along the ring), with no
// allocation per event.
type outcomes[O any] struct {
	seqs []uint64
	outs []O
	next int  // where the next one goes
	full bool // every slot holds one
}

func newOutcomes[O any](keep int) outcomes[O] {
	return outcomes[O]{seqs: make([]uint64, keep), outs: make([]O, keep)}
}

// add keeps the outcome of the event at seq, which follows every event
// kept, forgetting the oldest when full.
func (r *outcomes[O]) add(seq uint64, o O) {
	if len(r.seqs) == 0 {
		return
	}
	r.seqs[r.next], r.outs[r.next] = seq, o
	r.next++
	if r.next == len(r.seqs) {
		r.next, r.full = 0, true
	}
}

// get returns the outcome of the event at seq if it is kept.
func (r *outcomes[O]) get(seq uint64) (O, bool) {
	var zero O
	// The oldest are at next.. when full, then ..next.
	if r.full {
		if i, ok := slices.BinarySearch(r.seqs[r.next:], seq); ok {
			return r.outs[r.next+i], true
		}
	}
	if i, ok := slices.BinarySearch(r.seqs[:r.next], seq); ok {
		return r.outs[i], true
	}
	return zero, false
}
