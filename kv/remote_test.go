package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestRemoteReadsTheServedStore: a client with no store of its own reads
// a node's store by request, with the same answers and errors as the
// store itself, and each answer reflects every op written before it.
func TestRemoteReadsTheServedStore(t *testing.T) {
	srv, l := node(t)
	ctx := testCtx(t)
	s := open(t, l, Options{})
	r := NewRemote(testnats.Log(t, srv.ClientURL(), transport.Config{}))
	if _, err := r.Get(ctx, "users", "alice"); !isNoService(err) {
		t.Fatalf("Get before Serve: %v, want ErrNoService", err)
	}
	stop, err := s.Serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	// Written by another writer right before the read: the node catches up
	// before it answers.
	w := open(t, testnats.Log(t, srv.ClientURL(), transport.Config{}), Options{})
	must(t)(w.Set(ctx, "users", "alice", map[string]int{"age": 3}))
	must(t)(w.Set(ctx, "users", "bob", "b"))
	v, err := r.Get(ctx, "users", "alice")
	if err != nil || string(v.Value) != `{"age":3}` || !v.Exists {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	local, _ := s.Get("users", "alice")
	if !bytes.Equal(mustJSON(t, v), mustJSON(t, local)) {
		t.Fatalf("remote value %s differs from the store's %s", mustJSON(t, v), mustJSON(t, local))
	}
	keys, more, err := r.Keys(ctx, "users", "", 1)
	if err != nil || len(keys) != 1 || keys[0] != "alice" || !more {
		t.Fatalf("Keys = %v %v %v", keys, more, err)
	}
	tables, err := r.Tables(ctx)
	if err != nil || len(tables.Tables) != 2 {
		t.Fatalf("Tables = %+v, %v", tables, err)
	}
	if _, err := l.Write(ctx, "kv.users", []byte(`{"op":"frobnicate","key":"x"}`)); err != nil {
		t.Fatal(err)
	}
	rej, err := r.Rejections(ctx, "users")
	if err != nil || len(rej) != 1 {
		t.Fatalf("Rejections = %+v, %v", rej, err)
	}
	_, err = r.Get(ctx, "nope", "x")
	expectErr(t, err, ErrNoTable)
	_, err = r.Get(ctx, "users", "carol")
	expectErr(t, err, ErrNoKey)
	_, _, err = r.Keys(ctx, "nope", "", 0)
	expectErr(t, err, ErrNoTable)
}

func isNoService(err error) bool { return errors.Is(err, transport.ErrNoService) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
