package kv

import (
	"testing"
)

func TestSmoke(t *testing.T) {
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	p := must(t)(s.Set(ctx, "users", "alice", map[string]int{"age": 3}))
	t.Log(p)
	if got := getValue(t, s, "users", "alice"); got != `{"age":3}` {
		t.Fatal(got)
	}
	t.Log(dump(t, s))
}
