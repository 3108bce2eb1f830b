package crdt

import (
	"errors"
	"testing"
)

func TestLWWSemantics(t *testing.T) {
	tests := []struct {
		name    string
		ops     []LWWOp
		want    string // "" for no value
		deleted bool
		winner  Dot
	}{
		{
			name: "greater timestamp wins",
			ops: []LWWOp{
				{Dot: dot("b", 9), TS: ts(1, 0), Value: raw(`"old"`)},
				{Dot: dot("a", 0), TS: ts(2, 0), Value: raw(`"new"`)},
			},
			want: `"new"`, winner: dot("a", 0),
		},
		{
			name: "logical part orders equal wall times",
			ops: []LWWOp{
				{Dot: dot("b", 0), TS: ts(5, 1), Value: raw(`1`)},
				{Dot: dot("a", 0), TS: ts(5, 2), Value: raw(`2`)},
			},
			want: `2`, winner: dot("a", 0),
		},
		{
			name: "equal timestamps: greater ESK wins",
			ops: []LWWOp{
				{Dot: dot("a", 7), TS: ts(5, 0), Value: raw(`"a"`)},
				{Dot: dot("b", 0), TS: ts(5, 0), Value: raw(`"b"`)},
			},
			want: `"b"`, winner: dot("b", 0),
		},
		{
			name: "equal timestamps and ESK: greater index wins",
			ops: []LWWOp{
				{Dot: dot("a", 2), TS: ts(5, 0), Value: raw(`2`)},
				{Dot: dot("a", 10), TS: ts(5, 0), Value: raw(`10`)},
				{Dot: dot("a", 3), TS: ts(5, 0), Value: raw(`3`)},
			},
			want: `10`, winner: dot("a", 10),
		},
		{
			name: "later delete leaves a tombstone",
			ops: []LWWOp{
				{Dot: dot("a", 0), TS: ts(1, 0), Value: raw(`1`)},
				{Dot: dot("a", 1), TS: ts(2, 0), Delete: true},
			},
			deleted: true, winner: dot("a", 1),
		},
		{
			name: "set after a delete wins over it",
			ops: []LWWOp{
				{Dot: dot("a", 0), TS: ts(1, 0), Value: raw(`1`)},
				{Dot: dot("a", 1), TS: ts(2, 0), Delete: true},
				{Dot: dot("b", 0), TS: ts(3, 0), Value: raw(`3`)},
			},
			want: `3`, winner: dot("b", 0),
		},
		{
			name: "tombstone ties are broken by dot too",
			ops: []LWWOp{
				{Dot: dot("b", 0), TS: ts(4, 0), Delete: true},
				{Dot: dot("a", 0), TS: ts(4, 0), Value: raw(`1`)},
			},
			deleted: true, winner: dot("b", 0),
		},
		{
			name: "value is compacted and HTML-escaped",
			ops:  []LWWOp{{Dot: dot("a", 0), TS: ts(1, 0), Value: raw(" { \"k\" : \"<&>\" } ")}},
			want: `{"k":"\u003c\u0026\u003e"}`, winner: dot("a", 0),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first *LWW
			permutations(len(tc.ops), func(order []int) {
				r := &LWW{}
				for _, i := range order {
					if err := r.Apply(tc.ops[i]); err != nil {
						t.Fatalf("Apply: %v", err)
					}
					if err := r.Apply(tc.ops[i]); err != nil { // a duplicate
						t.Fatalf("Apply: %v", err)
					}
				}
				v, ok := r.Value()
				if got := string(v); got != tc.want || ok != (tc.want != "") {
					t.Fatalf("order %v: Value = %s, %v; want %s", order, got, ok, tc.want)
				}
				if r.Deleted() != tc.deleted {
					t.Fatalf("order %v: Deleted = %v", order, r.Deleted())
				}
				if _, d, _ := r.Winner(); d != tc.winner {
					t.Fatalf("order %v: winner %s, want %s", order, d, tc.winner)
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

func TestLWWEmptyAndCopies(t *testing.T) {
	var r LWW
	if _, ok := r.Value(); ok {
		t.Fatal("empty register has a value")
	}
	if _, _, ok := r.Winner(); ok {
		t.Fatal("empty register has a winner")
	}
	if !r.Equal(nil) || !(*LWW)(nil).Equal(&r) {
		t.Fatal("empty register not Equal to nil")
	}
	in := raw(`[1,2]`)
	if err := r.Apply(LWWOp{Dot: dot("a", 0), TS: ts(1, 0), Value: in}); err != nil {
		t.Fatal(err)
	}
	in[1] = '9'
	v, _ := r.Value()
	v[1] = '8'
	c := r.Clone()
	if got, _ := r.Value(); string(got) != `[1,2]` {
		t.Fatalf("state shares memory with the op or Value: %s", got)
	}
	if !c.Equal(&r) {
		t.Fatal("clone differs")
	}
	var m LWW
	m.Merge(&r)
	if err := r.Apply(LWWOp{Dot: dot("a", 1), TS: ts(2, 0), Value: raw(`3`)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Value(); string(got) != `[1,2]` {
		t.Fatalf("merged state changed with its source: %s", got)
	}
}

func TestLWWRejectsInvalidOps(t *testing.T) {
	tests := []struct {
		name string
		op   LWWOp
	}{
		{"zero dot", LWWOp{TS: ts(1, 0), Value: raw(`1`)}},
		{"negative wall time", LWWOp{Dot: dot("a", 0), TS: ts(-1, 0), Value: raw(`1`)}},
		{"empty value", LWWOp{Dot: dot("a", 0), TS: ts(1, 0)}},
		{"invalid JSON", LWWOp{Dot: dot("a", 0), TS: ts(1, 0), Value: raw(`{`)}},
		{"two JSON values", LWWOp{Dot: dot("a", 0), TS: ts(1, 0), Value: raw(`1 2`)}},
		{"invalid UTF-8", LWWOp{Dot: dot("a", 0), TS: ts(1, 0), Value: raw("\"\xff\"")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r LWW
			err := r.Apply(tc.op)
			if !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("Apply = %v, want ErrInvalidOp", err)
			}
			if !r.Equal(&LWW{}) {
				t.Fatal("rejected op changed the state")
			}
		})
	}
	// A delete needs no value.
	var r LWW
	if err := r.Apply(LWWOp{Dot: dot("a", 0), TS: ts(1, 0), Delete: true}); err != nil {
		t.Fatal(err)
	}
}
