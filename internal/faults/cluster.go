package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/detbus/detbus/internal/testnats"
)

// Cluster is a NATS cluster of `detbus serve` processes on loopback, each
// node behind a client proxy and a route proxy of one [Network]. Nodes
// advertise their route proxy as their cluster address, so every route
// goes through a proxy whatever the nodes learn by gossip.
//
// The methods that change a node (Kill, Restart, Pause, Resume) are for one
// goroutine, the fault schedule; the others are safe for concurrent use.
type Cluster struct {
	Net   *Network
	Nodes []*Node
	bin   string
	name  string
	args  []string // extra flags of every node
	sites bool     // every node is a site of its own
}

// Node is one `detbus serve` process of a [Cluster], restarted on the same
// data directory and ports after a kill.
type Node struct {
	Name       string
	Dir        string // JetStream store, kept across restarts
	ClientPort int    // the node's own client listener
	RoutePort  int    // the node's own route listener
	Client     *Proxy // what clients dial
	Route      *Proxy // what peers dial

	c   *Cluster
	out testnats.SyncBuffer // the output of every run

	mu     sync.Mutex
	cmd    *exec.Cmd
	runs   int
	start  int           // offset in out where this run's output begins
	exited chan struct{} // closed when this run's process has exited
}

// StartCluster starts n nodes of the detbus binary bin as a cluster named
// name, with the log replicated n times, and waits until every node is
// ready. Every process is killed, and the proxies closed, at cleanup; if
// the test failed, the nodes' output is logged then (its tail) and kept in
// full under the system's temporary directory.
func StartCluster(t testing.TB, bin, name string, n int, extra ...string) *Cluster {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i+1)
	}
	return startNodes(t, &Cluster{Net: NewNetwork(), bin: bin, name: name, args: extra}, names)
}

// StartSiteProcesses starts a site per name, each a node of the detbus
// binary bin (`serve --site`), linked by gateways through the network's
// proxies: each site knows the next as a peer and learns the others. Its
// Route proxy is the gateway; its Client proxy is unused by site tests,
// whose clients dial the site directly ([Node.DirectURL]) so that a
// partition cuts the site off from the others, not from its clients.
func StartSiteProcesses(t testing.TB, bin string, names ...string) *Cluster {
	t.Helper()
	return startNodes(t, &Cluster{Net: NewNetwork(), bin: bin, name: "sites", sites: true}, names)
}

// startNodes gives c a node per name behind its proxies, starts them and
// waits until every one is ready. Every process is killed, and the
// proxies closed, at cleanup; if the test failed, the nodes' output is
// logged then (its tail) and kept in full under the system's temporary
// directory.
func startNodes(t testing.TB, c *Cluster, names []string) *Cluster {
	t.Helper()
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Kill()
		}
		c.Net.Close()
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	ports := testnats.FreePorts(t, 2*len(names))
	base := t.TempDir()
	for i, name := range names {
		var err error
		node := &Node{Name: name, Dir: filepath.Join(base, name), ClientPort: ports[2*i], RoutePort: ports[2*i+1], c: c}
		if node.Client, err = c.Net.ClientProxy(node.Name, loopback(node.ClientPort)); err != nil {
			t.Fatal(err)
		}
		if node.Route, err = c.Net.RouteProxy(node.Name, loopback(node.RoutePort)); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		if err := node.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range c.Nodes {
		if err := node.WaitReady(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// DirectURL is the node's own client listener, not through its proxy.
func (n *Node) DirectURL() string { return "nats://" + loopback(n.ClientPort) }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// ClientURLs are the nodes' client proxies, comma-separated, for
// nats.Connect.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, len(c.Nodes))
	for i, node := range c.Nodes {
		urls[i] = "nats://" + node.Client.Addr()
	}
	return strings.Join(urls, ",")
}

// ClientOptions are the options clients of the cluster should connect with:
// they use only the proxies (never the addresses the servers advertise),
// notice a dead or paused node within about a second, and reconnect to
// another at once.
func ClientOptions() []nats.Option {
	return []nats.Option{
		nats.IgnoreDiscoveredServers(),
		nats.PingInterval(500 * time.Millisecond),
		nats.MaxPingsOutstanding(2),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.MaxReconnects(-1),
		nats.Timeout(time.Second),
		nats.RetryOnFailedConnect(true),
	}
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, node := range c.Nodes {
		if node.Name == name {
			return node
		}
	}
	return nil
}

func (n *Node) args() []string {
	if n.c.sites {
		i := slices.Index(n.c.Nodes, n)
		next := n.c.Nodes[(i+1)%len(n.c.Nodes)]
		return append([]string{"serve", "--site", n.Name, "--port", strconv.Itoa(n.ClientPort), "--http-port", "0", "--http", "",
			"--data", n.Dir, "--gateway-port", strconv.Itoa(n.RoutePort), "--gateway-advertise", n.Route.Addr(),
			"--peer", next.Name + "=nats://" + next.Route.Addr()}, n.c.args...)
	}
	routes := make([]string, len(n.c.Nodes))
	for i, node := range n.c.Nodes {
		routes[i] = "nats-route://" + node.Route.Addr()
	}
	return append([]string{"serve", "--name", n.Name, "--port", strconv.Itoa(n.ClientPort), "--http-port", "0", "--http", "",
		"--data", n.Dir, "--cluster", n.c.name, "--cluster-port", strconv.Itoa(n.RoutePort),
		"--cluster-advertise", n.Route.Addr(), "--routes", strings.Join(routes, ","),
		"--replicas", strconv.Itoa(len(n.c.Nodes)), "--log"}, n.c.args...)
}

// launch starts a run of the node's process.
func (n *Node) launch() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.runs++
	fmt.Fprintf(&n.out, "\n===== %s run %d at %s =====\n", n.Name, n.runs, time.Now().Format(time.TimeOnly+".000"))
	n.start = n.out.Len()
	cmd := exec.Command(n.c.bin, n.args()...)
	cmd.Stdout, cmd.Stderr = &n.out, &n.out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("faults: start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.cmd, n.exited = cmd, exited
	return nil
}

// WaitReady waits until the current run of the node says it is ready
// (it has joined the cluster and opened the log).
func (n *Node) WaitReady(timeout time.Duration) error {
	n.mu.Lock()
	start, exited := n.start, n.exited
	n.mu.Unlock()
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(n.out.StringFrom(start), "detbus node ready") {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("faults: %s exited before it was ready", n.Name)
		case <-deadline:
			return fmt.Errorf("faults: %s not ready after %v", n.Name, timeout)
		case <-tick.C:
		}
	}
}

// Kill SIGKILLs the node's process and waits until it has exited.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // a stopped process dies too
	<-exited
}

// Restart starts the node again on the same data directory and ports
// after a Kill.
func (n *Node) Restart() error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	select {
	case <-exited:
	default:
		return fmt.Errorf("faults: restart %s: still running", n.Name)
	}
	return n.launch()
}

// Pause SIGSTOPs the node's process.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP) }

// Resume SIGCONTs a paused node.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("faults: %v to %s: %w", sig, n.Name, err)
	}
	return nil
}

// Output is everything the node's runs have printed.
func (n *Node) Output() string { return n.out.String() }

// StreamHealth says whether the stream has a leader and every replica is
// current, as the stream leader sees it.
func StreamHealth(ctx context.Context, js jetstream.JetStream, stream string, replicas int) (leader string, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info := s.CachedInfo()
	switch {
	case info.Cluster == nil || info.Cluster.Leader == "":
		return "", errors.New("no stream leader")
	case len(info.Cluster.Replicas) != replicas-1:
		return info.Cluster.Leader, fmt.Errorf("leader %s sees %d other replicas", info.Cluster.Leader, len(info.Cluster.Replicas))
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return info.Cluster.Leader, fmt.Errorf("replica %s: current %v, offline %v, lag %d", r.Name, r.Current, r.Offline, r.Lag)
		}
	}
	return info.Cluster.Leader, nil
}

// dumpLogs logs the tail of each node's output and keeps the whole of it
// in files.
func (c *Cluster) dumpLogs(t testing.TB) {
	dir, err := os.MkdirTemp("", "detbus-faults-logs-")
	for _, node := range c.Nodes {
		out := node.Output()
		if err == nil {
			_ = os.WriteFile(filepath.Join(dir, node.Name+".log"), []byte(out), 0o644)
		}
		lines := strings.Split(out, "\n")
		t.Logf("%s: last %d of %d lines of output:\n%s", node.Name, min(len(lines), 60), len(lines), strings.Join(lines[max(len(lines)-60, 0):], "\n"))
	}
	if err == nil {
		t.Logf("the nodes' whole output is in %s", dir)
	}
}

// BuildDetbus builds the detbus command (without the race detector, whatever
// the test's flags) into dir and returns the binary's path.
func BuildDetbus(dir string) (string, error) {
	bin := filepath.Join(dir, "detbus")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/detbus/detbus/cmd/detbus")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("faults: go build: %v\n%s", err, out)
	}
	return bin, nil
}
