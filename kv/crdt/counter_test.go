package crdt

import (
	"errors"
	"math"
	"testing"
)

func inc(w string, d Dot, delta int64) CounterOp { return CounterOp{Dot: d, Writer: w, Delta: delta} }

func TestCounterSemantics(t *testing.T) {
	tests := []struct {
		name     string
		ops      []CounterOp
		want     int64
		overflow bool
	}{
		{"empty", nil, 0, false},
		{"increments and decrements", []CounterOp{inc("w1", dot("a", 0), 5), inc("w1", dot("a", 1), -2), inc("w2", dot("b", 0), 10)}, 13, false},
		{"negative total", []CounterOp{inc("w1", dot("a", 0), 1), inc("w2", dot("a", 1), -4)}, -3, false},
		{"saturates at MaxInt64", []CounterOp{inc("w1", dot("a", 0), math.MaxInt64), inc("w2", dot("b", 0), 1)}, math.MaxInt64, true},
		{"saturates at MinInt64", []CounterOp{inc("w1", dot("a", 0), math.MinInt64), inc("w2", dot("b", 0), -1)}, math.MinInt64, true},
		{"MinInt64 itself is exact", []CounterOp{inc("w1", dot("a", 0), math.MinInt64)}, math.MinInt64, false},
		{
			// an intermediate sum overflows in some orders; the exact
			// total does not.
			"order-independent back in range",
			[]CounterOp{inc("w1", dot("a", 0), math.MaxInt64), inc("w1", dot("a", 1), math.MaxInt64), inc("w2", dot("b", 0), math.MinInt64), inc("w2", dot("b", 1), math.MinInt64+3)},
			1, false,
		},
		{
			"far beyond int64 both ways",
			[]CounterOp{inc("w", dot("a", 0), math.MinInt64), inc("w", dot("a", 1), math.MinInt64), inc("w", dot("a", 2), math.MinInt64), inc("w", dot("a", 3), math.MaxInt64)},
			math.MinInt64, true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *Counter
			permutations(len(tc.ops), func(order []int) {
				c := &Counter{}
				for _, i := range order {
					for range 2 { // duplicates count once
						if err := c.Apply(tc.ops[i]); err != nil {
							t.Fatalf("Apply: %v", err)
						}
					}
				}
				if got := c.Value(); got != tc.want {
					t.Fatalf("order %v: Value = %d, want %d", order, got, tc.want)
				}
				v, err := c.Exact()
				if v != tc.want || errors.Is(err, ErrOverflow) != tc.overflow {
					t.Fatalf("order %v: Exact = %d, %v", order, v, err)
				}
				if first == nil {
					first = c
				} else if !first.Equal(c) || mustJSON(t, first) != mustJSON(t, c) {
					t.Fatalf("order %v: state differs from the first order", order)
				}
			})
		})
	}
}

func TestCounterMergeCountsOverlapOnce(t *testing.T) {
	var r1, r2 Counter
	shared := inc("w1", dot("a", 0), 7)
	for _, r := range []*Counter{&r1, &r2} {
		if err := r.Apply(shared); err != nil {
			t.Fatal(err)
		}
	}
	if err := r1.Apply(inc("w1", dot("a", 1), 1)); err != nil {
		t.Fatal(err)
	}
	if err := r2.Apply(inc("w2", dot("b", 0), -3)); err != nil {
		t.Fatal(err)
	}
	r1.Merge(&r2)
	r1.Merge(&r2)
	if got := r1.Value(); got != 5 {
		t.Fatalf("Value = %d, want 5 (7+1-3)", got)
	}
	if r2.Value() != 4 {
		t.Fatal("Merge modified its argument")
	}
}

func TestCounterRejectsInvalidOps(t *testing.T) {
	for name, op := range map[string]CounterOp{
		"zero dot":         {Writer: "w", Delta: 1},
		"empty writer":     {Dot: dot("a", 0), Delta: 1},
		"writer not UTF-8": {Dot: dot("a", 0), Writer: "\xff", Delta: 1},
	} {
		t.Run(name, func(t *testing.T) {
			var c Counter
			if err := c.Apply(op); !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Apply = %v, want ErrInvalidOp", err)
			}
			if !c.Equal(nil) {
				t.Fatal("rejected op changed the state")
			}
		})
	}
}
