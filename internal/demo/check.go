package demo

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TB is the part of [testing.TB] the test helpers below use.
type TB interface {
	Helper()
	Context() context.Context
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// RunDemo runs run with args and a 20-second limit, logs the time it
// took and its report, and returns the report. An error fails the test
// at once.
func RunDemo(t TB, run RunFunc, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	err := run(ctx, args, &out)
	t.Logf("run %v took %v:\n%s", args, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String()
}

// CheckUsageErrors checks that run returns a [UsageError], and writes
// nothing to its stdout, for each of the bad command lines.
func CheckUsageErrors(t TB, run RunFunc, bad [][]string) {
	t.Helper()
	for _, args := range bad {
		var out strings.Builder
		err := run(t.Context(), args, &out)
		var ue UsageError
		if !errors.As(err, &ue) {
			t.Errorf("run %v: got %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("run %v wrote %q to stdout", args, out.String())
		}
	}
}

// CheckInstances checks the instance lines of a demo's report out, as
// [ReportInstances] writes them for the DET named det: that there are
// instances of them, and that each instance has computed outputs
// outputs, won or lost each, and found no divergence. It returns how
// many outputs the instances won between them.
func CheckInstances(t TB, out, det string, instances, outputs int) (won int) {
	t.Helper()
	line := regexp.MustCompile(`(?m)^  (` + regexp.QuoteMeta(det) + `-\d+): outputs (\d+), won (\d+), lost (\d+), divergences (\d+)$`)
	lines := line.FindAllStringSubmatch(out, -1)
	if len(lines) != instances {
		t.Fatalf("output has %d instance lines, want %d", len(lines), instances)
	}
	for _, m := range lines {
		n, _ := strconv.Atoi(m[2])
		w, _ := strconv.Atoi(m[3])
		lost, _ := strconv.Atoi(m[4])
		if n != outputs || w+lost != outputs || m[5] != "0" {
			t.Errorf("%s: outputs %d, won %d, lost %d, divergences %s; want %d outputs, won+lost = outputs, no divergence",
				m[1], n, w, lost, m[5], outputs)
		}
		won += w
	}
	return won
}
