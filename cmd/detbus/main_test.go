package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

// startServe runs `detbus serve` in-process on free loopback ports, with
// extra flags, and returns its NATS URL and its output so far; the node
// stops at cleanup.
func startServe(t *testing.T, extra ...string) (string, *testnats.SyncBuffer) {
	t.Helper()
	port := testnats.FreePorts(t, 1)[0]
	p := goRun(t, "serve", append([]string{"serve", "--port", fmt.Sprint(port), "--http-port", "-1", "--http", "127.0.0.1:0", "--data", t.TempDir()}, extra...)...)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	p.waitOutput(t, 30*time.Second, "detbus node ready")
	if !strings.Contains(p.out.String(), url) {
		t.Fatalf("serve output does not name %s:\n%s", url, p.out.String())
	}
	return url, p.out
}

// TestServeCluster forms a three-node cluster from three `detbus serve`
// commands, with the log replicated three times, and uses it.
func TestServeCluster(t *testing.T) {
	ports := testnats.FreePorts(t, 6)
	var routes []string
	for _, p := range ports[3:] {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	var nodes []*proc
	for i := range 3 {
		args := []string{"serve", "--name", fmt.Sprintf("n%d", i+1), "--port", fmt.Sprint(ports[i]), "--http-port", "0",
			"--http", "", "--data", t.TempDir(), "--cluster", "detbus", "--cluster-port", fmt.Sprint(ports[3+i]),
			"--routes", strings.Join(routes, ","), "--replicas", "3"}
		nodes = append(nodes, goRun(t, fmt.Sprintf("serve n%d", i+1), args...))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for _, n := range nodes {
		n.waitOutput(t, 90*time.Second, "detbus node ready")
	}
	url := strings.Join(urls, ",")
	testnats.WaitFor(t, 90*time.Second, "cluster serving", func() error {
		_, err := runCLI(t, "status", "--nats", url, "--timeout", "2s")
		return err
	})
	for i := range 5 {
		out, err := runCLI(t, "write", "c.k", fmt.Sprintf(`{"i":%d}`, i), "--nats", urls[i%3], "--index", fmt.Sprint(i))
		if err != nil || !strings.Contains(out, `"outcome":"written"`) {
			t.Fatalf("write %d via %s: %v\n%s", i, urls[i%3], err, out)
		}
	}
	out, err := runCLI(t, "status", "--nats", url)
	if err != nil || !strings.Contains(out, "replicas 3") || !regexpLine(out, "c.k", "5") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestServeWriteTailStatus(t *testing.T) {
	url, _ := startServe(t)
	for i, args := range [][]string{
		{"write", "orders.eu", `{"qty":1}`, "--nats", url},
		{"write", "orders.eu", `{"qty":2}`, "--nats", url, "--index", "1"},
		{"write", "--nats", url, "orders.us", `{"qty":3}`},
	} {
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		var res writeResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Outcome != "written" {
			t.Fatalf("write %d output %q: %v", i, out, err)
		}
	}
	out, err := runCLI(t, "write", "orders.eu", `{"qty":9}`, "--nats", url, "--index", "0")
	if err != nil || !strings.Contains(out, `"outcome":"present"`) || !strings.Contains(out, `"equal":false`) {
		t.Fatalf("conditional write at a taken index: %v\n%s", err, out)
	}
	out, err = runCLI(t, "write", "orders.eu", `{}`, "--nats", url, "--index", "7")
	if err == nil || !strings.Contains(err.Error(), "ahead") {
		t.Fatalf("write ahead: %v\n%s", err, out)
	}
	out, err = runCLI(t, "tail", "orders.eu", "--nats", url, "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"index":0`) || !strings.Contains(lines[1], `"event":{"qty":2}`) {
		t.Fatalf("tail output:\n%s", out)
	}
	out, err = runCLI(t, "tail", "orders.eu", "--nats", url, "--from", "1")
	if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "orders.eu #1 ") {
		t.Fatalf("tail --from 1: %v\n%s", err, out)
	}
	out, err = runCLI(t, "status", "--nats", url)
	if err != nil || !strings.Contains(out, "3 events") || !regexpLine(out, "orders.eu", "2") || !regexpLine(out, "orders.us", "1") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

func regexpLine(out, esk, count string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == esk && f[1] == count {
			return true
		}
	}
	return false
}

func TestTailFollow(t *testing.T) {
	url, _ := startServe(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out testnats.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"tail", "f.x", "--follow", "--nats", url}, &out, &out) }()
	for i := range 3 {
		if o, err := runCLI(t, "write", "f.x", fmt.Sprintf(`{"i":%d}`, i), "--nats", url); err != nil {
			t.Fatal(err, o)
		}
	}
	testnats.WaitFor(t, 10*time.Second, "followed events", func() error {
		if n := strings.Count(out.String(), "\n"); n < 3 {
			return fmt.Errorf("%d lines", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `f.x #2 `) {
		t.Fatalf("follow output:\n%s", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"nope"},
		{"write"},
		{"write", "a"},
		{"write", "a..b", "{}"},
		{"write", "a", "{not json"},
		{"write", "a", "{}", "--index", "x"},
		{"tail"},
		{"tail", "a.*", "--from", "3"},
		{"status", "extra"},
		{"serve", "--sync", "sometimes"},
	} {
		_, err := runCLI(t, args...)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
			continue
		}
		var buf bytes.Buffer
		if code := exitCode(err, &buf); code != 2 || buf.Len() == 0 {
			t.Errorf("%q: exit %d, message %q", args, code, buf.String())
		}
	}
	if _, err := runCLI(t, "help"); err != nil {
		t.Fatal(err)
	}
}

func TestClientCommandsNeedAServer(t *testing.T) {
	url := "nats://127.0.0.1:" + fmt.Sprint(testnats.FreePorts(t, 1)[0])
	_, err := runCLI(t, "status", "--nats", url, "--timeout", "500ms")
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("status without a server: %v", err)
	}
	var ue *usageError
	if errors.As(err, &ue) {
		t.Fatal("an unreachable server is not a usage error")
	}
}

// TestServeRunsTransformsAndMetrics: a node started with --transform runs
// the DET, and its HTTP server offers the DET's metrics for scraping.
func TestServeRunsTransformsAndMetrics(t *testing.T) {
	url, out := startServe(t, "--transform", "bank")
	for i := range 5 {
		cmd := fmt.Sprintf(`{"op":"deposit","id":"d%d","account":"alice","amount":10}`, i)
		if o, err := runCLI(t, "write", "bank.commands.alice", cmd, "--nats", url); err != nil {
			t.Fatal(err, o)
		}
	}
	var metricsURL string
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "metrics:" {
			metricsURL = f[1]
		}
	}
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") {
		t.Fatalf("no metrics URL in:\n%s", out.String())
	}
	testnats.WaitFor(t, 30*time.Second, "DET metrics", func() error {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, want := range []string{`detbus_transform_inputs_total{detbus_instance="detbus-bank",detbus_transform="bank"`, "detbus_transform_outputs_won_total", "detbus_transform_lag"} {
			if !strings.Contains(string(body), want) {
				return fmt.Errorf("metrics lack %q", want)
			}
		}
		return nil
	})
	o, err := runCLI(t, "status", "--nats", url)
	if err != nil || !strings.Contains(o, "detbus-bank") || !regexpLine(o, "bank.decisions", "5") {
		t.Fatalf("status: %v\n%s", err, o)
	}
}

// TestTailOfNothingSaysSo: tail of an ESK, or a pattern, with no events
// says so on stderr, and succeeds.
func TestTailOfNothingSaysSo(t *testing.T) {
	url := kvNode(t)
	if out, err := runCLI(t, "write", "some.esk", `{}`, "--nats", url); err != nil {
		t.Fatal(err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"tail", "empty.esk"}, "tail: ESK empty.esk has no events\n"},
		{[]string{"tail", "empty.*"}, "tail: no ESK matching empty.* has events\n"},
		{[]string{"tail", "some.esk", "--from-seq", "2"}, "tail: ESK some.esk has no events from seq 2 on\n"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append(c.args, "--nats", url), &out, &errOut); err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if out.Len() != 0 || errOut.String() != c.want {
			t.Errorf("%q printed %q and on stderr %q, want %q", c.args, out.String(), errOut.String(), c.want)
		}
	}
	out, err := runCLI(t, "tail", "some.esk", "--nats", url)
	if err != nil || strings.Contains(out, "no events") {
		t.Errorf("tail of an ESK with events: %v\n%s", err, out)
	}
}

// TestFlagErrorPrintedOnce: a wrong flag's error reaches the user once,
// with where to find the flags, and exit status 2.
func TestFlagErrorPrintedOnce(t *testing.T) {
	for _, args := range [][]string{
		{"write", "a", "{}", "--nope"},
		{"serve", "--nope"},
		{"kv", "get", "t", "k", "--nope"},
		{"tasks", "add", "q", "--nope"},
		{"tail", "a", "--from", "x"},
	} {
		var out, errOut, exitOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		code := exitCode(err, &exitOut)
		all := out.String() + errOut.String() + exitOut.String()
		msg := "flag provided but not defined"
		if args[len(args)-1] == "x" {
			msg = `invalid value "x"`
		}
		if code != 2 || strings.Count(all, msg) != 1 || !strings.Contains(all, " -h lists its flags") {
			t.Errorf("%q: exit %d, printed:\n%s", args, code, all)
		}
	}
}
