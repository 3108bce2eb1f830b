package kv

import (
	"testing"

	"github.com/detbus/detbus/internal/testnats"
)

// farFuture is the largest HLC time there is, as an attacker would stamp
// an op with the nats CLI.
const farFuture = "Detbus-Hlc:9223372036854775807.4294967295"

// TestFarFutureTimeDoesNotWin: an op stamped far in the future by a raw
// publisher takes the stored time instead, counted as clamped, so the
// honest writes after it win: a set and a delete of the same key, and a
// map field set again after a remove.
func TestFarFutureTimeDoesNotWin(t *testing.T) {
	t.Parallel()
	cli := testnats.NatsCLI(t)
	srv, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	url := srv.ClientURL()
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	must(t)(s.CreateTable(ctx, "profiles", TypeMap))
	testnats.NatsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"victim","value":"attacker"}`, true, farFuture)
	testnats.NatsPub(t, ctx, cli, url, "events.kv.profiles", `{"op":"set","key":"victim","field":"role","value":"admin"}`, true, farFuture)
	must(t)(s.Set(ctx, "users", "victim", "honest"))
	if got := getValue(t, s, "users", "victim"); got != `"honest"` {
		t.Fatalf("after an honest set, victim = %s", got)
	}
	must(t)(s.Delete(ctx, "users", "victim"))
	if got := getValue(t, s, "users", "victim"); got != `null` {
		t.Fatalf("after an honest delete, victim = %s", got)
	}
	must(t)(s.RemoveField(ctx, "profiles", "victim", "role"))
	must(t)(s.SetField(ctx, "profiles", "victim", "name", "Vic"))
	if got := getValue(t, s, "profiles", "victim"); got != `{"name":"Vic"}` {
		t.Fatalf("after a remove, the attacker's field came back: %s", got)
	}
	for _, table := range []string{"users", "profiles"} {
		if info, _ := s.Table(table); info.Clamped != 1 {
			t.Fatalf("%s counts %d clamped ops, want 1", table, info.Clamped)
		}
	}
}
