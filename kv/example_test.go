package kv_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// startExampleNode starts an embedded node reachable only in-process.
func startExampleNode() (*transport.Log, func()) {
	dir, err := os.MkdirTemp("", "detbus-kv-example")
	if err != nil {
		log.Fatal(err)
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: "example", DontListen: true, StoreDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv.NATS()))
	if err != nil {
		log.Fatal(err)
	}
	l, err := transport.Open(context.Background(), nc, transport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	return l, func() { l.Close(); nc.Close(); srv.Shutdown(); os.RemoveAll(dir) }
}

func Example() {
	l, stop := startExampleNode()
	defer stop()
	ctx := context.Background()

	s, err := kv.Open(ctx, l, kv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// Declare tables, then write; every write returns once this store
	// has folded it, so reads see it.
	s.CreateTable(ctx, "users", kv.TypeLWW)
	s.CreateTable(ctx, "visits", kv.TypeCounter)
	pos, _ := s.Set(ctx, "users", "alice", map[string]int{"age": 3})
	fmt.Println(pos.ESK, pos.Index)
	s.Incr(ctx, "visits", "alice", 2)
	s.Incr(ctx, "visits", "alice", 1)

	v, _ := s.Get("users", "alice")
	fmt.Println(string(v.Value))
	v, _ = s.Get("visits", "alice")
	fmt.Println(string(v.Value))

	// Ops that do not fit the table are refused before they are written.
	_, err = s.Add(ctx, "users", "alice", "x")
	fmt.Println(err)

	// Any publisher can write ops; malformed ones are rejected, the same
	// way on every replica, and the ops after them apply.
	l.Write(ctx, "kv.users", []byte(`{"op":"set","key":"bob"}`))
	l.Write(ctx, "kv.users", []byte(`{"op":"set","key":"bob","value":true}`))
	s.Sync(ctx)
	v, _ = s.Get("users", "bob")
	fmt.Println(string(v.Value))
	for _, r := range s.Rejections("users") {
		fmt.Println(r.Position.Index, r.Reason)
	}
	// Output:
	// kv.users 0
	// {"age":3}
	// 3
	// users: kv: wrong table type: add is not an op of an lww table (it takes set, delete)
	// true
	// 1 kv: invalid op: set on an lww table needs a "value"
}
