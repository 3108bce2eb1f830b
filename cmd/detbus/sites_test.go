package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

// TestSitesCommand starts three sites with one command, writes at one,
// and sees the write in the others' copies and kv stores, in status, on
// the HTTP API and in the metrics.
func TestSitesCommand(t *testing.T) {
	p := startProc(t, "sites", "sites", "--port", "-1", "--gateway-port", "-1", "--http-port", "-1", "--data", t.TempDir())
	p.waitOutput(t, 2*time.Minute, "Stop with Ctrl-C.")
	summary := p.out.String()
	if n := strings.Count(summary, "detbus sites ready: 3 sites"); n != 1 {
		t.Fatalf("%d summaries:\n%s", n, summary)
	}
	nats, ui := map[string]string{}, map[string]string{}
	for _, site := range []string{"a", "b", "c"} {
		m := regexp.MustCompile(`(?m)^  ` + site + `\s+(nats://\S+)\s+UI (http://\S+/)\s+gateway \d+\s+data \S+$`).FindStringSubmatch(summary)
		if m == nil {
			t.Fatalf("no line for site %s:\n%s", site, summary)
		}
		nats[site], ui[site] = m[1], m[2]
	}
	// Without --site, a client is told where the log is.
	if got, err := runCLI(t, "status", "--nats", nats["a"]); err == nil || !strings.Contains(got+err.Error(), "name the site with --site") {
		t.Fatalf("status at a site without --site: %v\n%s", err, got)
	}
	if got, err := runCLI(t, "write", "--nats", nats["a"], "--site", "a", "orders", `{"qty":1}`); err != nil || !strings.Contains(got, `"outcome":"written"`) {
		t.Fatalf("write at a: %v\n%s", err, got)
	}
	if got, err := runCLI(t, "kv", "create", "--nats", nats["a"], "--site", "a", "users", "lww"); err != nil {
		t.Fatalf("kv create at a: %v\n%s", err, got)
	}
	if got, err := runCLI(t, "kv", "set", "--nats", nats["a"], "--site", "a", "users", "alice", `{"age":3}`); err != nil {
		t.Fatalf("kv set at a: %v\n%s", err, got)
	}
	testnats.WaitFor(t, time.Minute, "a's events in b's copy, by status", func() error {
		got, err := runCLI(t, "status", "--nats", nats["b"], "--site", "b")
		if err != nil {
			return fmt.Errorf("%v: %s", err, got)
		}
		// The copy of a holds the write, the declaration, the set, and
		// a's ticks.
		m := regexp.MustCompile(`(?m)^a\s+(\d+)\s+\d+\s`).FindStringSubmatch(got)
		if !regexp.MustCompile(`(?m)^a\s+up\s`).MatchString(got) || m == nil || atoi(m[1]) < 3 {
			return fmt.Errorf("status at b:\n%s", got)
		}
		return nil
	})
	testnats.WaitFor(t, time.Minute, "alice at c's node", func() error {
		got, err := runCLI(t, "kv", "get", "--nats", nats["c"], "--site", "c", "users", "alice")
		if err != nil || !strings.Contains(got, `"age":3`) {
			return fmt.Errorf("%v: %s", err, got)
		}
		return nil
	})
	testnats.WaitFor(t, time.Minute, "b's copy of a verified by a's checkpoints", func() error {
		got, err := runCLI(t, "status", "--nats", nats["b"], "--site", "b")
		if err != nil || !regexp.MustCompile(`(?m)^a\s.*\sto [1-9]\d*\s`).MatchString(got) {
			return fmt.Errorf("%v: %s", err, got)
		}
		return nil
	})
	// A checkpoint that does not hold, written to a's log, shows at b.
	forged := `{"stream":"EVENTS_a","seq":2,"hash":"` + strings.Repeat("0", 64) + `"}`
	if got, err := runCLI(t, "write", "--nats", nats["a"], "--site", "a", "detbus.chain", forged); err != nil {
		t.Fatalf("write a forged checkpoint: %v\n%s", err, got)
	}
	testnats.WaitFor(t, time.Minute, "the forged checkpoint reported at b", func() error {
		got, err := runCLI(t, "status", "--nats", nats["b"], "--site", "b")
		if err != nil || !regexp.MustCompile(`(?m)^a\s.*DISAGREES: `).MatchString(got) {
			return fmt.Errorf("%v: %s", err, got)
		}
		return nil
	})
	res, err := http.Get(ui["b"] + "api/sites/")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Site  string `json:"site"`
		Links []struct {
			Site string
			Up   bool
		}
		Copies []struct {
			Origin string
			Events uint64
		}
	}
	err = json.NewDecoder(res.Body).Decode(&rep)
	res.Body.Close()
	if err != nil || rep.Site != "b" || len(rep.Links) != 2 || len(rep.Copies) != 2 || rep.Copies[0].Origin != "a" || rep.Copies[0].Events < 3 {
		t.Fatalf("GET /api/sites/ at b: %v %+v", err, rep)
	}
	res, err = http.Get(ui["b"] + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, m := range []string{`detbus_site_copy_lag{`, `detbus_site_link_up{`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("metrics at b lack %s", m)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("sites stopped with %v", err)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
