package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// runCluster starts a development cluster: n `detbus serve` processes on
// loopback forming one NATS cluster with the log replicated on every node.
// It stops them all when it is stopped, or when one of them exits.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster", stderr)
	nodes := fs.Int("nodes", 3, "number of nodes (each a detbus serve process)")
	port := fs.Int("port", 4222, "client port of the first node; the others follow (-1: free ports)")
	clusterPort := fs.Int("cluster-port", 6222, "route port of the first node; the others follow (-1: free ports)")
	httpPort := fs.Int("http-port", 8080, "HTTP port (/metrics, /healthz, the UI) of the first node; the others follow (0: off, -1: free ports)")
	data := fs.String("data", "./detbus-cluster", "parent of each node's data directory")
	var extra multiFlag
	fs.Var(&extra, "serve-flag", "a flag passed to every node's serve, e.g. --serve-flag=--sync=always (repeatable)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	if *nodes < 1 {
		return usagef("--nodes must be at least 1")
	}
	clientPorts, err := portRange(*port, *nodes)
	if err != nil {
		return err
	}
	routePorts, err := portRange(*clusterPort, *nodes)
	if err != nil {
		return err
	}
	var httpPorts []int
	if *httpPort != 0 {
		if httpPorts, err = portRange(*httpPort, *nodes); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the detbus binary: %w", err)
	}
	routes := make([]string, *nodes)
	for i, p := range routePorts {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	names := make([]string, *nodes)
	argv := make([][]string, *nodes)
	urls := make([]string, *nodes)
	for i := range *nodes {
		name := fmt.Sprintf("n%d", i+1)
		a := []string{"serve", "--name", name, "--host", "127.0.0.1", "--port", strconv.Itoa(clientPorts[i]), "--http-port", "0",
			"--data", filepath.Join(*data, name), "--cluster", "detbus", "--cluster-port", strconv.Itoa(routePorts[i]),
			"--routes", strings.Join(routes, ","), "--replicas", strconv.Itoa(*nodes)}
		if httpPorts != nil {
			a = append(a, "--http", fmt.Sprintf("127.0.0.1:%d", httpPorts[i]))
		} else {
			a = append(a, "--http", "")
		}
		names[i], argv[i] = name, append(a, extra...)
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
	}
	ps, err := startNodes(ctx, exe, names, argv, stdout)
	if err != nil || ps == nil {
		return err
	}
	defer stopAll(ps.procs)
	ps.outMu.Lock()
	printClusterReady(stdout, ps.banners, strings.Join(urls, ","))
	ps.outMu.Unlock()
	return ps.wait(ctx)
}

// nodeProcs are serve processes started by startNodes.
type nodeProcs struct {
	procs   []*node
	banners []map[string]string // each node's ready banner
	exited  chan error
	outMu   sync.Mutex // held while writing to stdout
}

// startNodes starts a `detbus serve` process per name with its argv and
// waits until every one has printed its ready banner. Their other output
// goes to stdout, each line marked with the node's name. It returns nil,
// nil when ctx ends first, and an error when a node exits first; in both
// cases it stops the nodes.
func startNodes(ctx context.Context, exe string, names []string, argv [][]string, stdout io.Writer) (*nodeProcs, error) {
	ps := &nodeProcs{procs: make([]*node, len(names)), banners: make([]map[string]string, len(names)), exited: make(chan error, len(names))}
	ready := make(chan int, len(names))
	for i, name := range names {
		cmd := exec.Command(exe, argv[i]...)
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			stopAll(ps.procs)
			return nil, fmt.Errorf("start node %s: %w", name, err)
		}
		nd := &node{cmd: cmd, done: make(chan struct{})}
		ps.procs[i] = nd
		go func() {
			// The node's ready banner goes into the summary; every
			// other line is passed on, marked with the node.
			sc := bufio.NewScanner(pr)
			var banner map[string]string // while reading the banner
			said := false
			for sc.Scan() {
				line := sc.Text()
				switch {
				case !said && strings.Contains(line, "detbus node ready"):
					said, banner = true, map[string]string{}
					continue
				case banner != nil && strings.HasPrefix(line, "Stop with Ctrl-C"):
					ps.outMu.Lock()
					ps.banners[i] = banner
					ps.outMu.Unlock()
					banner = nil
					ready <- i
					continue
				case banner != nil:
					if k, v, ok := bannerField(line); ok {
						banner[k] = v
					}
					continue
				}
				ps.outMu.Lock()
				fmt.Fprintf(stdout, "[%s] %s\n", name, line)
				ps.outMu.Unlock()
			}
		}()
		go func() {
			err := cmd.Wait()
			pw.Close()
			close(nd.done)
			ps.exited <- fmt.Errorf("node %s exited: %v", name, err)
		}()
	}
	for n := 0; n < len(names); {
		select {
		case <-ready:
			n++
		case err := <-ps.exited:
			stopAll(ps.procs)
			return nil, err
		case <-ctx.Done():
			stopAll(ps.procs)
			return nil, nil
		}
	}
	return ps, nil
}

// wait returns when a node exits (with its error) or ctx ends.
func (ps *nodeProcs) wait(ctx context.Context) error {
	select {
	case err := <-ps.exited:
		return err
	case <-ctx.Done():
		return nil
	}
}

// bannerFields are the lines of serve's ready banner that the cluster's
// summary shows.
var bannerFields = []string{"NATS", "monitoring", "metrics", "kv UI", "tasks UI", "transforms", "data", "fsync", "auth"}

// bannerField parses a line of serve's ready banner, "  key:  value".
func bannerField(line string) (key, value string, ok bool) {
	key, value, ok = strings.Cut(strings.TrimSpace(line), ":")
	if !ok || !slices.Contains(bannerFields, key) {
		return "", "", false
	}
	return key, strings.TrimSpace(value), true
}

// printClusterReady prints one summary of the nodes' banners: a line per
// node with its addresses and data, then what they share.
func printClusterReady(w io.Writer, banners []map[string]string, urls string) {
	first := func(v string) string { // a value without its remarks
		if f := strings.Fields(v); len(f) > 0 {
			return f[0]
		}
		return v
	}
	b0 := banners[0]
	_, stream, _ := strings.Cut(b0["NATS"], "  ") // "(stream EVENTS, subjects events.>)"
	fmt.Fprintf(w, "detbus cluster ready: %d nodes, the log on every node %s\n", len(banners), strings.TrimSpace(stream))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, b := range banners {
		fmt.Fprintf(tw, "  n%d\t%s\tUI %s\tmetrics %s\tdata %s\n", i+1, first(b["NATS"]), first(b["kv UI"]), first(b["metrics"]), b["data"])
	}
	tw.Flush()
	if t := b0["transforms"]; t != "" && t != "off" {
		fmt.Fprintf(w, "  transforms: %s (on every node)\n", t)
	}
	if rest := strings.TrimSpace(strings.TrimPrefix(b0["kv UI"], first(b0["kv UI"]))); rest != "" {
		fmt.Fprintf(w, "  UI access:  %s\n", rest)
	}
	fmt.Fprintf(w, "  fsync:      %s\n  auth:       %s\n", b0["fsync"], b0["auth"])
	fmt.Fprintf(w, "  NATS: %s\n  try:  go run ./cmd/detbus status --nats %s\nStop with Ctrl-C.\n", urls, urls)
}

// node is one serve process of the cluster; done is closed when it has
// exited.
type node struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// stopAll asks every node to stop (SIGTERM) and kills those still running
// after ten seconds.
func stopAll(procs []*node) {
	var wg sync.WaitGroup
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}()
	}
	wg.Wait()
}

// portRange is n ports from first on, or n free loopback ports for -1.
func portRange(first, n int) ([]int, error) {
	ports := make([]int, n)
	if first != -1 {
		if first <= 0 || first+n-1 > 65535 {
			return nil, usagef("port %d leaves no room for %d nodes", first, n)
		}
		for i := range ports {
			ports[i] = first + i
		}
		return ports, nil
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
