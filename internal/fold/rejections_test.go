package fold_test

import (
	"fmt"
	"testing"

	"github.com/detbus/detbus/internal/fold"
)

// TestRejectionsBound: every rejection is counted, the newest keep are
// kept oldest first, and a restored list keeps at most keep of them.
func TestRejectionsBound(t *testing.T) {
	var r fold.Rejections[int]
	for i := range 3 {
		r.Add(i, 5)
	}
	if fmt.Sprint(r.List()) != "[0 1 2]" || r.Count() != 3 || r.Len() != 3 {
		t.Errorf("after 3: %v of %d", r.List(), r.Count())
	}
	for i := 3; i < 12; i++ {
		r.Add(i, 5)
	}
	if fmt.Sprint(r.List()) != "[7 8 9 10 11]" || r.Count() != 12 {
		t.Errorf("after 12: %v of %d", r.List(), r.Count())
	}
	var none fold.Rejections[int]
	none.Add(1, 0)
	if none.Count() != 1 || none.Len() != 0 {
		t.Errorf("keeping none: %v of %d", none.List(), none.Count())
	}

	restored, err := fold.NewRejections(40, []int{1, 2, 3, 4, 5, 6}, 4)
	if err != nil || fmt.Sprint(restored.List()) != "[3 4 5 6]" || restored.Count() != 40 {
		t.Errorf("restored: %v of %d, %v", restored.List(), restored.Count(), err)
	}
	restored.Add(7, 4)
	if fmt.Sprint(restored.List()) != "[4 5 6 7]" || restored.Count() != 41 {
		t.Errorf("restored, then one more: %v of %d", restored.List(), restored.Count())
	}
	short, _ := fold.NewRejections(10, []int{1}, 4)
	for i := 2; i <= 6; i++ {
		short.Add(i, 4)
	}
	if fmt.Sprint(short.List()) != "[3 4 5 6]" {
		t.Errorf("restored short, then filled: %v", short.List())
	}
	if _, err := fold.NewRejections(1, []int{1, 2}, 4); err == nil {
		t.Error("more kept than counted: no error")
	}
}
