package fold

import (
	"slices"
	"testing"
)

// Reset undoes one Add, whether it appended or overwrote the oldest.
func TestRejectionsMarkReset(t *testing.T) {
	var r Rejections[int]
	for i := range 7 {
		before := r.List()
		m := r.Mark()
		r.Add(100+i, 3)
		r.Reset(m)
		if got := r.List(); !slices.Equal(got, before) || r.Count() != uint64(i) {
			t.Fatalf("after %d adds, Reset left %v (count %d), want %v", i, got, r.Count(), before)
		}
		r.Add(i, 3)
	}
	if got := r.List(); !slices.Equal(got, []int{4, 5, 6}) {
		t.Fatalf("kept %v", got)
	}
	m := r.Mark()
	r.Reset(m) // nothing added: nothing changes
	if got := r.List(); !slices.Equal(got, []int{4, 5, 6}) || r.Count() != 7 {
		t.Fatalf("kept %v, count %d", got, r.Count())
	}
}
