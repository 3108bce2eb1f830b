package fold

import "fmt"

// Rejections counts the events a fold rejected and keeps the newest of
// them, as many as the client asks for on each Add. It is part of the
// client's state: it is used under the client's lock. The zero value is
// empty.
type Rejections[T any] struct {
	count uint64
	kept  []T // a ring once full
	next  int // the oldest kept, and where the next one goes, once full
}

// NewRejections returns rejections that counted count, keeping kept
// (oldest first) of which at most the newest keep (keep > 0). It returns
// an error when more are kept than counted, as a corrupt snapshot might
// say.
func NewRejections[T any](count uint64, kept []T, keep int) (Rejections[T], error) {
	if uint64(len(kept)) > count {
		return Rejections[T]{}, fmt.Errorf("%d kept of %d rejections", len(kept), count)
	}
	kept = kept[max(len(kept)-keep, 0):]
	return Rejections[T]{count: count, kept: append(make([]T, 0, len(kept)), kept...)}, nil
}

// Add counts one rejection and keeps x, forgetting the oldest kept
// beyond keep, which must be the same on every call.
func (r *Rejections[T]) Add(x T, keep int) {
	r.count++
	switch {
	case keep <= 0:
	case len(r.kept) < keep:
		r.kept = append(r.kept, x)
	default:
		r.kept[r.next] = x
		r.next = (r.next + 1) % len(r.kept)
	}
}

// Count returns how many were rejected in all.
func (r *Rejections[T]) Count() uint64 { return r.count }

// Len returns how many are kept.
func (r *Rejections[T]) Len() int { return len(r.kept) }

// List returns the kept rejections, oldest first, in a new slice.
func (r *Rejections[T]) List() []T {
	out := make([]T, 0, len(r.kept))
	out = append(out, r.kept[r.next:]...)
	return append(out, r.kept[:r.next]...)
}
