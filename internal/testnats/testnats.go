// Package testnats starts real embedded NATS servers for tests: a single
// JetStream node or a cluster of nodes on loopback ports, each stopped by
// t.Cleanup. Nothing here mocks NATS.
package testnats

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Node starts a single embedded JetStream server on a free loopback port.
func Node(t testing.TB) *transport.Server {
	t.Helper()
	cfg := transport.ServerConfig{Name: "test", Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()}
	s, err := transport.StartServer(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Cluster starts n embedded JetStream servers on loopback that form one
// cluster, and waits until a stream with n replicas can be placed.
func Cluster(t testing.TB, n int) []*transport.Server {
	t.Helper()
	ports := FreePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	servers := make([]*transport.Server, n)
	for i := range n {
		cfg := transport.ServerConfig{
			Name: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(),
			Cluster: transport.ClusterConfig{Name: "detbus-test", Host: "127.0.0.1", Port: ports[i], Routes: routes},
		}
		s, err := transport.StartServer(cfg)
		if err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
		t.Cleanup(s.Shutdown)
		servers[i] = s
	}
	WaitFor(t, 30*time.Second, "JetStream meta leader", func() error {
		for _, s := range servers {
			if s.NATS().JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("no meta leader yet")
	})
	// A meta leader may not know every peer yet; placing a replicated
	// stream is the real test of readiness.
	nc := Conn(t, URLs(servers))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 30*time.Second, fmt.Sprintf("an R%d stream to be placed", n), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "READY_PROBE", Subjects: []string{"ready.probe"}, Replicas: n, Storage: jetstream.MemoryStorage}); err != nil {
			return err
		}
		return js.DeleteStream(ctx, "READY_PROBE")
	})
	nc.Close()
	return servers
}

// URLs joins the client URLs of servers for nats.Connect.
func URLs(servers []*transport.Server) string {
	out := ""
	for i, s := range servers {
		if i > 0 {
			out += ","
		}
		out += s.ClientURL()
	}
	return out
}

// FreePorts reserves n distinct free loopback TCP ports.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Conn connects to url and closes the connection at cleanup.
func Conn(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Log opens a transport.Log on its own connection to url, with opts.
func Log(t testing.TB, url string, cfg transport.Config, opts ...nats.Option) *transport.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := transport.Connect(ctx, url, cfg, opts...)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// WaitFor polls cond until it returns nil or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(wait)
	}
}
