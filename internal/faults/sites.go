package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// Sites are embedded servers, one per site, linked by gateways that run
// through the network's proxies: each site knows only the next one as a
// peer (the last knows the first) and learns the others from them, so
// [Network.Partition] of a site's name cuts its links.
type Sites struct {
	Net     *Network
	Names   []string
	Servers map[string]*transport.Server
}

// StartSites starts one site per name on loopback and waits until their
// JetStream metadata has a leader. The sites stop when t ends.
func StartSites(t testing.TB, names ...string) *Sites {
	t.Helper()
	nw := NewNetwork()
	t.Cleanup(nw.Close)
	ports := testnats.FreePorts(t, len(names))
	proxies := make([]*Proxy, len(names))
	for i, n := range names {
		p, err := nw.RouteProxy(n, loopback(ports[i]))
		if err != nil {
			t.Fatal(err)
		}
		proxies[i] = p
	}
	s := &Sites{Net: nw, Names: names, Servers: map[string]*transport.Server{}}
	type started struct {
		name string
		srv  *transport.Server
		err  error
	}
	done := make(chan started, len(names))
	for i, n := range names {
		next := (i + 1) % len(names)
		cfg := transport.ServerConfig{Name: n, Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(),
			Site: transport.SiteConfig{Name: n, Port: ports[i], Advertise: proxies[i].Addr(),
				Peers: []string{names[next] + "=nats://" + proxies[next].Addr()}}}
		if len(names) == 1 {
			cfg.Site.Peers = nil
		}
		go func() {
			srv, err := transport.StartServer(cfg)
			done <- started{n, srv, err}
		}()
	}
	var errs []error
	for range names {
		r := <-done
		if r.err != nil {
			errs = append(errs, fmt.Errorf("site %s: %w", r.name, r.err))
			continue
		}
		t.Cleanup(r.srv.Shutdown)
		s.Servers[r.name] = r.srv
	}
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	testnats.WaitFor(t, 60*time.Second, "a JetStream meta leader among the sites", func() error {
		for _, srv := range s.Servers {
			if srv.NATS().JetStreamIsLeader() {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	return s
}

// URL is the client URL of a site's server (not through a proxy).
func (s *Sites) URL(site string) string { return s.Servers[site].ClientURL() }
