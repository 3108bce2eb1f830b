package fold

// RejectionsMark is what [Rejections.Add] is about to change, taken by
// [Rejections.Mark], so that [Rejections.Reset] can undo it: a client
// that applies events out of order and back (a merge of several logs)
// undoes its rejections with the rest of its state.
type RejectionsMark[T any] struct {
	count uint64
	n     int // how many were kept
	next  int
	over  T // the one the next Add overwrites, once full
}

// Mark returns what an Add would change.
func (r *Rejections[T]) Mark() RejectionsMark[T] {
	m := RejectionsMark[T]{count: r.count, n: len(r.kept), next: r.next}
	if len(r.kept) > 0 {
		m.over = r.kept[r.next]
	}
	return m
}

// Reset undoes the one Add made since m was taken, if any.
func (r *Rejections[T]) Reset(m RejectionsMark[T]) {
	if r.count == m.count {
		return
	}
	r.count = m.count
	if len(r.kept) > m.n {
		clear(r.kept[m.n:])
		r.kept = r.kept[:m.n]
		return
	}
	if len(r.kept) > 0 {
		r.kept[m.next] = m.over
	}
	r.next = m.next
}
