package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/demo"
)

func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	return demo.RunDemo(t, run, args...)
}

func checkSummary(t *testing.T, out string, commands, instances int) {
	t.Helper()
	for _, want := range []string{
		"node: embedded, in-process",
		"instances: " + strconv.Itoa(instances) + " of bank, racing to write bank.decisions",
		"wrote " + strconv.Itoa(commands) + " commands over 5 accounts",
		"decisions: " + strconv.Itoa(commands) + " (accepted ",
		"final balances:\n  alice ",
		"\nreplicas agree: yes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if won := demo.CheckInstances(t, out, "bank", instances, commands); won != commands {
		t.Errorf("the instances won %d decisions between them, want one per command (%d)", won, commands)
	}
}

func TestRunThreeInstances(t *testing.T) {
	t.Parallel()
	out := runDemo(t, "--commands", "60", "--instances", "3")
	checkSummary(t, out, 60, 3)
}

func TestRunOneInstance(t *testing.T) {
	t.Parallel()
	out := runDemo(t, "--commands", "60", "--instances", "1", "--seed", "9")
	checkSummary(t, out, 60, 1)
	if !strings.Contains(out, "bank-1: outputs 60, won 60, lost 0, divergences 0") {
		t.Error("a single instance should win every decision")
	}
}

func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	// The same seed gives the same commands, so the same decisions and
	// balances, whoever wins the races.
	summary := func(out string) string {
		i, j := strings.Index(out, "decisions: "), strings.Index(out, "instances:\n")
		if i < 0 || j < i {
			t.Fatalf("no summary in %q", out)
		}
		return out[i:j]
	}
	a := summary(runDemo(t, "--commands", "40", "--instances", "2", "--seed", "5"))
	b := summary(runDemo(t, "--commands", "40", "--instances", "3", "--seed", "5"))
	if a != b {
		t.Errorf("two runs with one seed differ:\n%s\nand\n%s", a, b)
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	demo.CheckUsageErrors(t, run, [][]string{
		{"--no-such-flag"},
		{"--instances", "0"},
		{"--commands", "-1"},
		{"extra"},
	})
}
