package faults

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestProxyPartition forms a three-node cluster of embedded servers whose
// routes and clients go through the proxies, and checks that every route
// runs through a proxy (gossip does not bypass them), that isolating a
// node cuts its routes and its clients and keeps them cut, and that
// healing lets the mesh form again.
func TestProxyPartition(t *testing.T) {
	const n = 3
	nw := NewNetwork()
	t.Cleanup(nw.Close)
	ports := testnats.FreePorts(t, 2*n)
	names := []string{"n1", "n2", "n3"}
	var routes []string
	clientProxies := map[string]*Proxy{}
	advertise := make([]string, n)
	for i, name := range names {
		p, err := nw.RouteProxy(name, loopback(ports[n+i]))
		if err != nil {
			t.Fatal(err)
		}
		advertise[i] = p.Addr()
		routes = append(routes, "nats-route://"+p.Addr())
	}
	servers := make([]*transport.Server, n)
	for i, name := range names {
		s, err := transport.StartServer(transport.ServerConfig{Name: name, Host: "127.0.0.1", Port: ports[i], StoreDir: t.TempDir(),
			Cluster: transport.ClusterConfig{Name: "proxied", Host: "127.0.0.1", Port: ports[n+i], Routes: routes, Advertise: advertise[i]}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		servers[i] = s
		if clientProxies[name], err = nw.ClientProxy(name, loopback(ports[i])); err != nil {
			t.Fatal(err)
		}
	}
	realRoutePorts := ports[n:]

	// peers returns the names each server has routes to, and fails on a
	// route that does not run through a proxy, or that carried a message
	// to a node in isolated over a route made since the partition began
	// (routes from before it carried messages then, and linger until the
	// node notices they are dead).
	var partitioned time.Time
	peers := func(isolated ...string) (map[string][]string, error) {
		out := map[string][]string{}
		for i, s := range servers {
			rz, err := s.NATS().Routez(&server.RoutezOptions{})
			if err != nil {
				return nil, err
			}
			for _, r := range rz.Routes {
				if r.DidSolicit && slices.Contains(realRoutePorts, r.Port) {
					return nil, fmt.Errorf("%s dialed %s at its route port %d, not through its proxy", names[i], r.RemoteName, r.Port)
				}
				if slices.Contains(isolated, names[i]) && r.InMsgs > 0 && !r.Start.Before(partitioned) {
					return nil, fmt.Errorf("%s received %d messages from %s across the partition", names[i], r.InMsgs, r.RemoteName)
				}
				if !slices.Contains(out[names[i]], r.RemoteName) {
					out[names[i]] = append(out[names[i]], r.RemoteName)
				}
			}
			slices.Sort(out[names[i]])
		}
		return out, nil
	}
	// want checks the routes of the nodes in w.
	want := func(w map[string][]string, isolated ...string) func() error {
		return func() error {
			got, err := peers(isolated...)
			if err != nil {
				t.Fatal(err)
			}
			for name, routes := range w {
				if !slices.Equal(got[name], routes) {
					return fmt.Errorf("routes %v, want %v", got, w)
				}
			}
			return nil
		}
	}
	mesh := map[string][]string{"n1": {"n2", "n3"}, "n2": {"n1", "n3"}, "n3": {"n1", "n2"}}
	testnats.WaitFor(t, 30*time.Second, "a full mesh through the proxies", want(mesh))

	nc, err := nats.Connect("nats://"+clientProxies["n1"].Addr(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	other, err := nats.Connect("nats://" + clientProxies["n2"].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	partitioned = time.Now()
	nw.Partition("n1")
	cut := map[string][]string{"n2": {"n3"}, "n3": {"n2"}}
	testnats.WaitFor(t, 30*time.Second, "n1 cut off", want(cut, "n1"))
	testnats.WaitFor(t, 10*time.Second, "n1's client disconnected", func() error {
		if !nc.IsClosed() {
			return fmt.Errorf("client of n1 still %v", nc.Status())
		}
		return nil
	})
	if c, err := nats.Connect("nats://"+clientProxies["n1"].Addr(), nats.Timeout(time.Second)); err == nil {
		c.Close()
		t.Fatal("a new client of the isolated n1 connected")
	}
	if !other.IsConnected() {
		t.Fatalf("client of n2 is %v during n1's isolation", other.Status())
	}
	// The nodes retry their routes every second or so; none may get
	// through while the partition lasts. (The isolated node, dialing, may
	// count a route for the instant between the peer's INFO and the
	// proxy's learning who dialed; no message crosses it.)
	deadline := time.Now().Add(3 * time.Second)
	for tick := time.NewTicker(100 * time.Millisecond); time.Now().Before(deadline); <-tick.C {
		if err := want(cut, "n1")(); err != nil {
			t.Fatalf("during the partition: %v", err)
		}
	}
	if got := strings.Join(nw.Isolated(), ","); got != "n1" {
		t.Fatalf("isolated %q", got)
	}

	nw.Heal()
	testnats.WaitFor(t, 30*time.Second, "the mesh again after healing", want(mesh))
}

func TestInfoName(t *testing.T) {
	for _, tc := range []struct {
		line, name string
		ok         bool
	}{
		{"INFO {\"server_id\":\"NABC\",\"server_name\":\"n2\",\"cluster\":\"c\"}\r\n", "n2", true},
		{"CONNECT {\"name\":\"NABC\"}\r\n", "", false},
		{"INFO {\"server_id\":\"NABC\"}\r\n", "", false},
		{"INFO not json\r\n", "", false},
		{"PING\r\n", "", false},
	} {
		name, ok := infoName([]byte(tc.line))
		if name != tc.name || ok != tc.ok {
			t.Errorf("infoName(%q) = %q, %v; want %q, %v", tc.line, name, ok, tc.name, tc.ok)
		}
	}
}
