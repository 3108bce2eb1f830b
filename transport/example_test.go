package transport_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// startExampleNode starts an embedded node reachable only in-process.
func startExampleNode() (*transport.Server, *transport.Log, func()) {
	dir, err := os.MkdirTemp("", "detbus-example")
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
	return srv, l, func() { l.Close(); nc.Close(); srv.Shutdown(); os.RemoveAll(dir) }
}

func ExampleLog_ExistsOrWrite() {
	_, l, stop := startExampleNode()
	defer stop()
	ctx := context.Background()

	r, _ := l.ExistsOrWrite(ctx, "orders.eu", 0, []byte(`{"qty":1}`))
	fmt.Println(r.Index, r.Outcome, r.Equal)

	// The same index again: already present, and equal or not.
	r, _ = l.ExistsOrWrite(ctx, "orders.eu", 0, []byte(`{"qty":1}`))
	fmt.Println(r.Index, r.Outcome, r.Equal)
	r, _ = l.ExistsOrWrite(ctx, "orders.eu", 0, []byte(`{"qty":2}`))
	fmt.Println(r.Index, r.Outcome, r.Equal)

	// An index past the count writes nothing.
	_, err := l.ExistsOrWrite(ctx, "orders.eu", 5, []byte(`{}`))
	fmt.Println(err)
	// Output:
	// 0 written true
	// 0 present true
	// 0 present false
	// transport: index 5 of ESK "orders.eu" is ahead of its count 1 (the next index is 1)
}

func ExampleLog_Events() {
	_, l, stop := startExampleNode()
	defer stop()
	ctx := context.Background()
	for _, e := range []struct{ esk, body string }{
		{"orders.eu", `{"qty":1}`}, {"orders.us", `{"qty":2}`}, {"orders.eu", `{"qty":3}`},
	} {
		if _, err := l.Write(ctx, e.esk, []byte(e.body)); err != nil {
			log.Fatal(err)
		}
	}
	for ev, err := range l.Events(ctx, []string{"orders.*"}, transport.ReadOptions{}) {
		if err != nil {
			log.Fatal(err)
		}
		var v struct{ Qty int }
		if err := ev.Decode(&v); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("seq %d: %s #%d qty %d\n", ev.Seq, ev.ESK, ev.Index, v.Qty)
	}
	// Output:
	// seq 1: orders.eu #0 qty 1
	// seq 2: orders.us #0 qty 2
	// seq 3: orders.eu #1 qty 3
}
