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

// instanceLine matches an instance's summary line.
var instanceLine = regexp.MustCompile(`(?m)^  (bank-\d+): outputs (\d+), won (\d+), lost (\d+), divergences (\d+)$`)

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
	lines := instanceLine.FindAllStringSubmatch(out, -1)
	if len(lines) != instances {
		t.Fatalf("output has %d instance lines, want %d", len(lines), instances)
	}
	won := 0
	for _, m := range lines {
		outputs, _ := strconv.Atoi(m[2])
		w, _ := strconv.Atoi(m[3])
		lost, _ := strconv.Atoi(m[4])
		if outputs != commands || w+lost != commands || m[5] != "0" {
			t.Errorf("%s: outputs %d, won %d, lost %d, divergences %s; want %d outputs, won+lost = outputs, no divergence",
				m[1], outputs, w, lost, m[5], commands)
		}
		won += w
	}
	if won != commands {
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
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--instances", "0"},
		{"--commands", "-1"},
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
