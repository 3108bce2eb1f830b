package crdt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func write(d Dot, v string, ctx ...Dot) MVRegOp { return MVRegOp{Dot: d, Value: raw(v), Context: ctx} }

// mvString renders Value as "dot=value" pairs.
func mvString(r *MVReg) string {
	s := ""
	for _, v := range r.Value() {
		s += fmt.Sprintf("%s=%s;", v.Dot, v.Value)
	}
	return s
}

func TestMVRegSemantics(t *testing.T) {
	tests := []struct {
		name string
		ops  []MVRegOp
		want string
	}{
		{"single write", []MVRegOp{write(dot("a", 0), `1`)}, "a@0=1;"},
		{"concurrent writes are all kept, sorted by dot", []MVRegOp{write(dot("b", 0), `"b"`), write(dot("a", 3), `"a"`), write(dot("a", 1), `"a1"`)}, `a@1="a1";a@3="a";b@0="b";`},
		{"a write replaces what it saw", []MVRegOp{write(dot("a", 0), `1`), write(dot("a", 1), `2`, dot("a", 0))}, "a@1=2;"},
		{
			"a write replaces exactly what it saw",
			[]MVRegOp{write(dot("a", 0), `1`), write(dot("b", 0), `2`), write(dot("a", 1), `3`, dot("a", 0))},
			"a@1=3;b@0=2;",
		},
		{
			"a write that saw both concurrent values resolves them",
			[]MVRegOp{write(dot("a", 0), `1`), write(dot("b", 0), `2`), write(dot("c", 0), `3`, dot("a", 0), dot("b", 0))},
			"c@0=3;",
		},
		{
			"two concurrent overwrites of one value",
			[]MVRegOp{write(dot("a", 0), `1`), write(dot("b", 0), `2`, dot("a", 0)), write(dot("c", 0), `3`, dot("a", 0))},
			"b@0=2;c@0=3;",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *MVReg
			// Every order, so a write delivered after the write that
			// replaced it stays replaced.
			permutations(len(tc.ops), func(order []int) {
				r := &MVReg{}
				for _, i := range order {
					for range 2 {
						if err := r.Apply(tc.ops[i]); err != nil {
							t.Fatalf("Apply: %v", err)
						}
					}
				}
				if got := mvString(r); got != tc.want || r.Len() != strings.Count(tc.want, ";") {
					t.Fatalf("order %v: Value = %s (Len %d), want %s", order, got, r.Len(), tc.want)
				}
				if first == nil {
					first = r
				} else if !first.Equal(r) || mustJSON(t, first) != mustJSON(t, r) {
					t.Fatalf("order %v: state differs from the first order", order)
				}
			})
		})
	}
}

func TestMVRegReplicas(t *testing.T) {
	var r1, r2 MVReg
	if err := r1.Apply(write(dot("a", 0), `"base"`)); err != nil {
		t.Fatal(err)
	}
	r2.Merge(&r1)
	// Concurrent writes on both replicas, each with its own context.
	if err := r1.Apply(write(dot("a", 1), `"one"`, r1.Context()...)); err != nil {
		t.Fatal(err)
	}
	if err := r2.Apply(write(dot("b", 0), `"two"`, r2.Context()...)); err != nil {
		t.Fatal(err)
	}
	m := r1.Clone()
	m.Merge(&r2)
	if got := mvString(m); got != `a@1="one";b@0="two";` {
		t.Fatalf("merged = %s", got)
	}
	// A write that saw both resolves the conflict everywhere.
	if err := m.Apply(write(dot("c", 0), `"both"`, m.Context()...)); err != nil {
		t.Fatal(err)
	}
	r2.Merge(m)
	r2.Merge(&r1)
	if got := mvString(&r2); got != `c@0="both";` || !r2.Equal(m) {
		t.Fatalf("after resolving: %s", got)
	}
}

func TestMVRegRejectsInvalidOps(t *testing.T) {
	for name, op := range map[string]MVRegOp{
		"zero dot":         {Value: raw(`1`)},
		"zero context dot": {Dot: dot("a", 0), Value: raw(`1`), Context: []Dot{{}}},
		"no value":         {Dot: dot("a", 0)},
		"invalid JSON":     {Dot: dot("a", 0), Value: raw(`[`)},
	} {
		t.Run(name, func(t *testing.T) {
			var r MVReg
			if err := r.Apply(op); !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Apply = %v, want ErrInvalidOp", err)
			}
			if !r.Equal(nil) {
				t.Fatal("rejected op changed the state")
			}
		})
	}
}
