package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/demo"
)

func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	return demo.RunDemo(t, run, args...)
}

var (
	offlineLine = regexp.MustCompile(`(?m)^offline engine: (\d+) events for (\d+) orders$`)
	eventsLine  = regexp.MustCompile(`(?m)^events: (\d+) \(acks (\d+), trades (\d+), dones (\d+), cancels (\d+), rejects (\d+)\)$`)
	tradeLine   = regexp.MustCompile(`(?m)^  (btc|eth)-eur +\d+ @ \d+  buy o\d+ +sell o\d+ +maker o\d+$`)
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
	if won := demo.CheckInstances(t, out, "matching", instances, want); won != want {
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
	demo.CheckUsageErrors(t, run, [][]string{
		{"--no-such-flag"},
		{"--instances", "0"},
		{"--orders", "0"},
		{"extra"},
	})
}
