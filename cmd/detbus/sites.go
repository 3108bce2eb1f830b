package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
)

// runSites starts development sites: a `detbus serve --site` process per
// site on loopback, each linked to the next (the others are learned), each
// with its own log and copies of the others'. It stops them all when it
// is stopped, or when one of them exits.
func runSites(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sites", stderr)
	names := fs.String("names", "a,b,c", "comma-separated site names")
	port := fs.Int("port", 4222, "client port of the first site; the others follow (-1: free ports)")
	gwPort := fs.Int("gateway-port", 7222, "gateway port of the first site; the others follow (-1: free ports)")
	httpPort := fs.Int("http-port", 8080, "HTTP port (/metrics, /healthz, the UI) of the first site; the others follow (0: off, -1: free ports)")
	data := fs.String("data", "./detbus-sites", "parent of each site's data directory")
	var extra multiFlag
	fs.Var(&extra, "serve-flag", "a flag passed to every site's serve (repeatable)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	sites := strings.Split(*names, ",")
	if len(sites) < 2 {
		return usagef("--names needs at least two sites")
	}
	seen := map[string]bool{}
	for _, s := range sites {
		if seen[s] {
			return usagef("--names: site %q twice", s)
		}
		seen[s] = true
		if err := validSiteFlag(s); err != nil {
			return err
		}
	}
	n := len(sites)
	clientPorts, err := portRange(*port, n)
	if err != nil {
		return err
	}
	gwPorts, err := portRange(*gwPort, n)
	if err != nil {
		return err
	}
	var httpPorts []int
	if *httpPort != 0 {
		if httpPorts, err = portRange(*httpPort, n); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the detbus binary: %w", err)
	}
	argv := make([][]string, n)
	urls := make([]string, n)
	for i, s := range sites {
		next := (i + 1) % n
		a := []string{"serve", "--site", s, "--host", "127.0.0.1", "--port", strconv.Itoa(clientPorts[i]), "--http-port", "0",
			"--data", filepath.Join(*data, s), "--gateway-port", strconv.Itoa(gwPorts[i]),
			"--peer", fmt.Sprintf("%s=nats://127.0.0.1:%d", sites[next], gwPorts[next])}
		if httpPorts != nil {
			a = append(a, "--http", fmt.Sprintf("127.0.0.1:%d", httpPorts[i]))
		} else {
			a = append(a, "--http", "")
		}
		argv[i] = append(a, extra...)
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
	}
	ps, err := startNodes(ctx, exe, sites, argv, stdout)
	if err != nil || ps == nil {
		return err
	}
	defer stopAll(ps.procs)
	ps.outMu.Lock()
	first := func(v string) string {
		if f := strings.Fields(v); len(f) > 0 {
			return f[0]
		}
		return v
	}
	fmt.Fprintf(stdout, "detbus sites ready: %d sites, each writing its own log and holding copies of the others'\n", n)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for i, b := range ps.banners {
		fmt.Fprintf(tw, "  %s\t%s\tUI %s\tgateway %d\tdata %s\n", sites[i], first(b["NATS"]), first(b["kv UI"]), gwPorts[i], b["data"])
	}
	tw.Flush()
	fmt.Fprintf(stdout, "  try:  go run ./cmd/detbus write --nats %s --site %s orders '{\"qty\":1}'\n", urls[0], sites[0])
	fmt.Fprintf(stdout, "        go run ./cmd/detbus status --nats %s --site %s\nStop with Ctrl-C.\n", urls[1], sites[1])
	ps.outMu.Unlock()
	return ps.wait(ctx)
}
