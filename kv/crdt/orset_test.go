package crdt

import (
	"errors"
	"slices"
	"testing"
)

func add(e string, d Dot) ORSetOp { return ORSetOp{Dot: d, Element: e} }

func remove(e string, observed ...Dot) ORSetOp {
	return ORSetOp{Dot: dot("rm", 0), Remove: true, Element: e, Observed: observed}
}

func TestORSetSemantics(t *testing.T) {
	tests := []struct {
		name string
		ops  []ORSetOp
		want []string
	}{
		{"adds", []ORSetOp{add("b", dot("a", 0)), add("a", dot("a", 1)), add("c", dot("b", 0))}, []string{"a", "b", "c"}},
		{"remove of the observed tag", []ORSetOp{add("x", dot("a", 0)), remove("x", dot("a", 0))}, []string{}},
		{
			// the remover saw only the first add; the second is concurrent.
			"concurrent add wins",
			[]ORSetOp{add("x", dot("a", 0)), add("x", dot("b", 0)), remove("x", dot("a", 0))},
			[]string{"x"},
		},
		{
			"remove of every observed tag",
			[]ORSetOp{add("x", dot("a", 0)), add("x", dot("b", 0)), remove("x", dot("a", 0), dot("b", 0))},
			[]string{},
		},
		{
			"remove touches only its element",
			[]ORSetOp{add("x", dot("a", 0)), add("y", dot("a", 1)), remove("y", dot("a", 0))},
			[]string{"x", "y"},
		},
		{"re-add after remove", []ORSetOp{add("x", dot("a", 0)), remove("x", dot("a", 0)), add("x", dot("a", 1))}, []string{"x"}},
		{"empty element", []ORSetOp{add("", dot("a", 0))}, []string{""}},
		{"remove with nothing observed", []ORSetOp{add("x", dot("a", 0)), remove("x")}, []string{"x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *ORSet
			// Every order: a remove delivered before the add it observed
			// still removes it.
			permutations(len(tc.ops), func(order []int) {
				s := &ORSet{}
				for _, i := range order {
					for range 2 {
						if err := s.Apply(tc.ops[i]); err != nil {
							t.Fatalf("Apply: %v", err)
						}
					}
				}
				if got := s.Value(); !slices.Equal(got, tc.want) || s.Len() != len(tc.want) {
					t.Fatalf("order %v: Value = %q (Len %d), want %q", order, got, s.Len(), tc.want)
				}
				if first == nil {
					first = s
				} else if !first.Equal(s) || mustJSON(t, first) != mustJSON(t, s) {
					t.Fatalf("order %v: state differs from the first order", order)
				}
			})
		})
	}
}

func TestORSetReplicasAddWins(t *testing.T) {
	// Both replicas see add(x)@a0. Replica 1 removes x with what it saw
	// while replica 2 adds x again concurrently.
	var r1, r2 ORSet
	for _, r := range []*ORSet{&r1, &r2} {
		if err := r.Apply(add("x", dot("a", 0))); err != nil {
			t.Fatal(err)
		}
	}
	rm := ORSetOp{Dot: dot("a", 1), Remove: true, Element: "x", Observed: r1.Tags("x")}
	if err := r1.Apply(rm); err != nil {
		t.Fatal(err)
	}
	if r1.Contains("x") {
		t.Fatal("x present after its remove")
	}
	if err := r2.Apply(add("x", dot("b", 0))); err != nil {
		t.Fatal(err)
	}
	m1, m2 := r1.Clone(), r2.Clone()
	m1.Merge(&r2)
	m2.Merge(&r1)
	if !m1.Equal(m2) || !m1.Contains("x") {
		t.Fatalf("merged: %v / %v, want x present on both", m1.Value(), m2.Value())
	}
	if got := m1.Tags("x"); !slices.Equal(got, []Dot{dot("b", 0)}) {
		t.Fatalf("Tags = %v", got)
	}
	if r1.Contains("x") || !r2.Contains("x") || len(r2.Tags("x")) != 2 {
		t.Fatal("Merge modified its argument")
	}
}

func TestORSetRejectsInvalidOps(t *testing.T) {
	for name, op := range map[string]ORSetOp{
		"add with zero dot":      {Element: "x"},
		"zero observed dot":      {Remove: true, Element: "x", Observed: []Dot{dot("a", 0), {}}},
		"element not UTF-8":      {Dot: dot("a", 0), Element: "\xff"},
		"remove element invalid": {Remove: true, Element: "\xfe", Observed: []Dot{dot("a", 0)}},
	} {
		t.Run(name, func(t *testing.T) {
			var s ORSet
			if err := s.Apply(op); !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Apply = %v, want ErrInvalidOp", err)
			}
			if !s.Equal(nil) {
				t.Fatal("rejected op changed the state")
			}
		})
	}
}
