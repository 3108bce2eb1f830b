package crdt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mset(k string, d Dot, at int64, v string) MapOp {
	return MapOp{Kind: MapSet, Key: k, Dot: d, TS: ts(at, 0), Value: raw(v)}
}

func madd(k string, d Dot, w string, delta int64) MapOp {
	return MapOp{Kind: MapAdd, Key: k, Dot: d, Writer: w, Delta: delta}
}

func mremove(k string, observed ...Dot) MapOp {
	return MapOp{Kind: MapRemove, Key: k, Dot: dot("rm", 0), Observed: observed}
}

// mapString renders Value as "key:register/counter" entries.
func mapString(m *Map) string {
	s := ""
	for _, e := range m.Value() {
		s += e.Key + ":"
		if e.HasRegister {
			s += string(e.Register)
		}
		s += "/"
		if e.HasCounter {
			s += fmt.Sprint(e.Counter)
		}
		s += ";"
	}
	return s
}

func TestMapSemantics(t *testing.T) {
	tests := []struct {
		name string
		ops  []MapOp
		want string
	}{
		{"register and counter keys", []MapOp{mset("name", dot("a", 0), 1, `"x"`), madd("hits", dot("a", 1), "w1", 2), madd("hits", dot("b", 0), "w2", 3)}, `hits:/5;name:"x"/;`},
		{"register keeps the last write", []MapOp{mset("k", dot("a", 0), 2, `"new"`), mset("k", dot("b", 0), 1, `"old"`)}, `k:"new"/;`},
		{"register tie broken by dot", []MapOp{mset("k", dot("b", 0), 1, `"b"`), mset("k", dot("a", 9), 1, `"a"`)}, `k:"b"/;`},
		{"remove of observed presence", []MapOp{mset("k", dot("a", 0), 1, `1`), mremove("k", dot("a", 0))}, ``},
		{
			"update concurrent with a remove wins",
			[]MapOp{madd("k", dot("a", 0), "w", 1), madd("k", dot("b", 0), "w", 1), mremove("k", dot("a", 0))},
			`k:/2;`,
		},
		{
			"register update concurrent with a remove wins",
			[]MapOp{mset("k", dot("a", 0), 1, `1`), mset("k", dot("b", 0), 2, `2`), mremove("k", dot("a", 0))},
			`k:2/;`,
		},
		{
			// removal hides the key; the nested value is kept and merged.
			"re-added counter resumes its total",
			[]MapOp{madd("k", dot("a", 0), "w", 5), mremove("k", dot("a", 0)), madd("k", dot("a", 1), "w", 1)},
			`k:/6;`,
		},
		{
			"re-added register keeps the greatest write, even the removed one",
			[]MapOp{mset("k", dot("a", 0), 9, `"removed"`), mremove("k", dot("a", 0)), mset("k", dot("a", 1), 3, `"again"`)},
			`k:"removed"/;`,
		},
		{"remove touches only its key", []MapOp{mset("x", dot("a", 0), 1, `1`), mset("y", dot("a", 1), 1, `2`), mremove("y", dot("a", 0))}, `x:1/;y:2/;`},
		{"mixed kinds on one key keep both", []MapOp{mset("k", dot("a", 0), 1, `"v"`), madd("k", dot("a", 1), "w", 4)}, `k:"v"/4;`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *Map
			permutations(len(tc.ops), func(order []int) {
				m := &Map{}
				for _, i := range order {
					for range 2 {
						if err := m.Apply(tc.ops[i]); err != nil {
							t.Fatalf("Apply: %v", err)
						}
					}
				}
				if got := mapString(m); got != tc.want || m.Len() != strings.Count(tc.want, ";") {
					t.Fatalf("order %v: Value = %s (Len %d), want %s", order, got, m.Len(), tc.want)
				}
				if first == nil {
					first = m
				} else if !first.Equal(m) || mustJSON(t, first) != mustJSON(t, m) {
					t.Fatalf("order %v: state differs from the first order", order)
				}
			})
		})
	}
}

func TestMapReplicasRemoveAddRace(t *testing.T) {
	var r1, r2 Map
	for _, r := range []*Map{&r1, &r2} {
		if err := r.Apply(madd("cart", dot("a", 0), "w1", 1)); err != nil {
			t.Fatal(err)
		}
	}
	// r1 removes the key with what it saw; r2 concurrently increments it.
	if err := r1.Apply(MapOp{Kind: MapRemove, Key: "cart", Dot: dot("a", 1), Observed: r1.Tags("cart")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r1.Get("cart"); ok {
		t.Fatal("key present after its remove")
	}
	if err := r2.Apply(madd("cart", dot("b", 0), "w2", 2)); err != nil {
		t.Fatal(err)
	}
	m1, m2 := r1.Clone(), r2.Clone()
	m1.Merge(&r2)
	m2.Merge(&r1)
	e, ok := m1.Get("cart")
	if !ok || !e.HasCounter || e.Counter != 3 || !m1.Equal(m2) {
		t.Fatalf("merged: %+v, %v; want the key present with 3", e, ok)
	}
	if _, ok := r1.Get("cart"); ok {
		t.Fatal("Merge modified its argument")
	}
	if got := m1.Tags("cart"); len(got) != 1 || got[0] != dot("b", 0) {
		t.Fatalf("Tags = %v", got)
	}
}

func TestMapRejectsInvalidOps(t *testing.T) {
	for name, op := range map[string]MapOp{
		"unknown kind":        {Kind: 9, Key: "k", Dot: dot("a", 0)},
		"zero kind":           {Key: "k", Dot: dot("a", 0)},
		"set with zero dot":   {Kind: MapSet, Key: "k", Value: raw(`1`)},
		"set with bad value":  {Kind: MapSet, Key: "k", Dot: dot("a", 0), Value: raw(`x`)},
		"set negative time":   {Kind: MapSet, Key: "k", Dot: dot("a", 0), TS: ts(-5, 0), Value: raw(`1`)},
		"add with no writer":  {Kind: MapAdd, Key: "k", Dot: dot("a", 0), Delta: 1},
		"add with zero dot":   {Kind: MapAdd, Key: "k", Writer: "w", Delta: 1},
		"remove zero dot":     {Kind: MapRemove, Key: "k", Observed: []Dot{{}}},
		"key not valid UTF-8": {Kind: MapAdd, Key: "\xff", Dot: dot("a", 0), Writer: "w"},
	} {
		t.Run(name, func(t *testing.T) {
			var m Map
			if err := m.Apply(op); !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Apply = %v, want ErrInvalidOp", err)
			}
			if !m.Equal(nil) {
				t.Fatal("rejected op changed the state")
			}
		})
	}
}
