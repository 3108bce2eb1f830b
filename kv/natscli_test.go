package kv

import (
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
)

// TestNatsCLIOps declares a table and writes ops with the plain nats CLI,
// as the package documentation shows, and reads them back.
func TestNatsCLIOps(t *testing.T) {
	t.Parallel()
	cli := testnats.NatsCLI(t)
	srv, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	url := srv.ClientURL()
	testnats.NatsPub(t, ctx, cli, url, "events.kv._config", `{"op":"set","key":"users","value":{"crdt":"lww"}}`, true)
	testnats.NatsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"alice","value":{"age":3}}`, false)
	testnats.NatsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"bob","value":`, true) // malformed
	testnats.NatsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"bob","value":[1,2]}`, true)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getValue(t, s, "users", "alice"); got != `{"age":3}` {
		t.Errorf("users/alice = %s", got)
	}
	if got := getValue(t, s, "users", "bob"); got != `[1,2]` {
		t.Errorf("users/bob = %s", got)
	}
	rej := s.Rejections("users")
	if len(rej) != 1 || rej[0].Position.Index != 1 || !strings.Contains(rej[0].Reason, "unexpected end") {
		t.Errorf("rejections: %+v", rej)
	}
}
