package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestClusterCommand starts the development cluster with one command, uses
// the log replicated on its three nodes, and stops every node with it.
func TestClusterCommand(t *testing.T) {
	p := startProc(t, "cluster", "cluster", "--port", "-1", "--cluster-port", "-1", "--http-port", "-1", "--data", t.TempDir())
	p.waitOutput(t, 2*time.Minute, "Stop with Ctrl-C.")
	// One summary, a line for each node, instead of each node's banner.
	summary := p.out.String()
	for _, unwanted := range []string{"detbus node ready", "Try next"} {
		if strings.Contains(summary, unwanted) {
			t.Errorf("the cluster's output has the nodes' %q:\n%s", unwanted, summary)
		}
	}
	if n := strings.Count(summary, "detbus cluster ready: 3 nodes"); n != 1 {
		t.Errorf("%d summaries:\n%s", n, summary)
	}
	for i := 1; i <= 3; i++ {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^  n%d  nats://127\.0\.0\.1:\d+  UI http://127\.0\.0\.1:\d+/  metrics http://\S+/metrics  data \S+/n%d$`, i, i)).MatchString(summary) {
			t.Errorf("no summary line of node n%d:\n%s", i, summary)
		}
	}
	m := regexp.MustCompile(`NATS: (nats://\S+)`).FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("cluster output names no NATS URLs:\n%s", p.out)
	}
	urls := m[1]
	if n := strings.Count(urls, "nats://"); n != 3 {
		t.Fatalf("cluster names %d URLs, want 3: %s", n, urls)
	}
	for i, u := range strings.Split(urls, ",") {
		got, err := runCLI(t, "write", "dev.k", fmt.Sprintf(`{"i":%d}`, i), "--nats", u, "--index", fmt.Sprint(i))
		if err != nil || !strings.Contains(got, `"outcome":"written"`) {
			t.Fatalf("write via %s: %v\n%s", u, err, got)
		}
	}
	got, err := runCLI(t, "status", "--nats", urls)
	if err != nil || !strings.Contains(got, "replicas 3") || !regexpLine(got, "dev.k", "3") {
		t.Fatalf("status: %v\n%s", err, got)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("cluster stopped with %v", err)
	}
	for _, u := range strings.Split(urls, ",") {
		if _, err := runCLI(t, "status", "--nats", u, "--timeout", "1s"); err == nil {
			t.Errorf("node %s still answers after the cluster stopped", u)
		}
	}
}

// TestExternalCluster uses the CLI against a NATS cluster that detbus did
// not start: three plain JetStream servers, the stream made R3 by a client.
func TestExternalCluster(t *testing.T) {
	servers := testnats.Cluster(t, 3)
	urls := testnats.URLs(servers)
	l := testnats.Log(t, urls, transport.Config{Replicas: 3})
	ctx := context.Background()
	if _, err := l.Write(ctx, "ext.k", []byte(`{"from":"sdk"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := runCLI(t, "write", "ext.k", `{"from":"cli"}`, "--nats", urls, "--index", "1"); err != nil || !strings.Contains(got, `"outcome":"written"`) {
		t.Fatalf("write: %v\n%s", err, got)
	}
	got, err := runCLI(t, "tail", "ext.k", "--nats", urls)
	if err != nil || !strings.Contains(got, `"from":"sdk"`) || !strings.Contains(got, `"from":"cli"`) {
		t.Fatalf("tail: %v\n%s", err, got)
	}
	got, err = runCLI(t, "status", "--nats", urls)
	if err != nil || !strings.Contains(got, "replicas 3") || !regexpLine(got, "ext.k", "2") {
		t.Fatalf("status: %v\n%s", err, got)
	}
}
