package crdt

import (
	"encoding/json"
	"testing"

	"github.com/detbus/detbus/hlc"
)

func dot(esk string, index uint64) Dot { return Dot{ESK: esk, Index: index} }

func ts(wall int64, logical uint32) hlc.Timestamp {
	return hlc.Timestamp{WallTime: wall, Logical: logical}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// permutations calls f with every ordering of the indices 0..n-1.
func permutations(n int, f func([]int)) {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			f(append([]int(nil), idx...))
			return
		}
		for i := k; i < n; i++ {
			idx[k], idx[i] = idx[i], idx[k]
			rec(k + 1)
			idx[k], idx[i] = idx[i], idx[k]
		}
	}
	rec(0)
}

// mustJSON encodes v or fails the test.
func mustJSON(t testing.TB, v json.Marshaler) string {
	t.Helper()
	b, err := v.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	return string(b)
}
