package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	err := run(ctx, args, &out)
	t.Logf("run %v took %v:\n%s", args, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String()
}

var (
	offlineLine  = regexp.MustCompile(`(?m)^offline engine: (\d+) events for (\d+) orders$`)
	eventsLine   = regexp.MustCompile(`(?m)^events: (\d+) \(acks (\d+), trades (\d+), dones (\d+), cancels (\d+), rejects (\d+)\)$`)
	tradeLine    = regexp.MustCompile(`(?m)^  (btc|eth)-eur +\d+ @ \d+  buy o\d+ +sell o\d+ +maker o\d+$`)
	instanceLine = regexp.MustCompile(`(?m)^  (matching-\d+): outputs (\d+), won (\d+), lost (\d+), divergences (\d+)$`)
)

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func checkSummary(t *testing.T, out string, orders, instances int) {
	t.Helper()
	for _, want := range []string{
		"node: embedded, in-process",
		"instances: " + strconv.Itoa(instances) + " of matching, racing to write matching.events",
		"wrote " + strconv.Itoa(orders) + " orders (",
		"to orders.btc-eur, orders.eth-eur",
		"\nlast ",
		"\nreplicas agree: yes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := offlineLine.FindStringSubmatch(out)
	if m == nil || atoi(m[2]) != orders {
		t.Fatalf("no line %q for %d orders", "offline engine: N events for M orders", orders)
	}
	want := atoi(m[1])
	e := eventsLine.FindStringSubmatch(out)
	if e == nil {
		t.Fatal("no events line")
	}
	sum := 0
	for _, c := range e[2:] {
		sum += atoi(c)
	}
	if atoi(e[1]) != want || sum != want {
		t.Errorf("events line %q: want %d events in all, one of each kind", e[0], want)
	}
	if atoi(e[2]) == 0 || atoi(e[3]) == 0 {
		t.Errorf("events line %q: want some acks and trades", e[0])
	}
	if n := len(tradeLine.FindAllString(out, -1)); n == 0 || n > 5 {
		t.Errorf("%d trade lines, want 1 to 5", n)
	}
	lines := instanceLine.FindAllStringSubmatch(out, -1)
	if len(lines) != instances {
		t.Fatalf("output has %d instance lines, want %d", len(lines), instances)
	}
	won := 0
	for _, m := range lines {
		outputs, w, lost := atoi(m[2]), atoi(m[3]), atoi(m[4])
		if outputs != want || w+lost != want || m[5] != "0" {
			t.Errorf("%s: outputs %d, won %d, lost %d, divergences %s; want %d outputs, won+lost = outputs, no divergence",
				m[1], outputs, w, lost, m[5], want)
		}
		won += w
	}
	if won != want {
		t.Errorf("the instances won %d events between them, want one per event (%d)", won, want)
	}
}

func TestRunThreeInstances(t *testing.T) {
	t.Parallel()
	out := runDemo(t, "--orders", "80", "--instances", "3")
	checkSummary(t, out, 80, 3)
}

func TestRunOneInstance(t *testing.T) {
	t.Parallel()
	out := runDemo(t, "--orders", "80", "--instances", "1", "--seed", "4")
	checkSummary(t, out, 80, 1)
	if !regexp.MustCompile(`matching-1: outputs (\d+), won (\d+), lost 0, divergences 0`).MatchString(out) {
		t.Error("a single instance should win every event")
	}
}

func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	// The same seed gives the same orders, so the same events, whoever
	// wins the races.
	summary := func(out string) string {
		i, j := strings.Index(out, "offline engine: "), strings.Index(out, "instances:\n")
		if i < 0 || j < i {
			t.Fatalf("no summary in %q", out)
		}
		s := out[i:j]
		// Drop the line with the elapsed time.
		k := strings.Index(s, "\nall ")
		l := strings.Index(s[k+1:], "\n")
		return s[:k] + s[k+1+l:]
	}
	a := summary(runDemo(t, "--orders", "60", "--instances", "2", "--seed", "5"))
	b := summary(runDemo(t, "--orders", "60", "--instances", "3", "--seed", "5"))
	if a != b {
		t.Errorf("two runs with one seed differ:\n%s\nand\n%s", a, b)
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--instances", "0"},
		{"--orders", "0"},
		{"extra"},
	} {
		var out bytes.Buffer
		err := run(t.Context(), args, &out)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run %v: got %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("run %v wrote %q to stdout", args, out.String())
		}
	}
}
