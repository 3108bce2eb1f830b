package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/demo"
)

func TestRun(t *testing.T) {
	t.Parallel()
	out := demo.RunDemo(t, run, "--nodes", "3", "--ops", "60")
	for _, want := range []string{
		"node: embedded, in-process",
		"replicas: 3 nodes, each with a kv store on a connection of its own, claiming 6 ranges in table \"ranges\"",
		"wrote 60 ops: ",
		"owners:\n  ..d ",
		"\nreplicas agree: yes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	// One node writes its claims in a fixed order, so a seed gives the
	// same owners every time.
	owners := func(out string) string {
		i := strings.Index(out, "owners:")
		if i < 0 {
			t.Fatalf("no owners in %q", out)
		}
		return out[i:]
	}
	a := owners(demo.RunDemo(t, run, "--nodes", "1", "--ops", "40", "--seed", "5"))
	b := owners(demo.RunDemo(t, run, "--nodes", "1", "--ops", "40", "--seed", "5"))
	if a != b {
		t.Errorf("two runs with one seed differ:\n%s\nand\n%s", a, b)
	}
}

func TestRunUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--no-such-flag"}, {"--nodes", "0"}, {"--ops", "-1"}, {"extra"}} {
		var out strings.Builder
		err := run(t.Context(), args, &out)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("%v wrote %q", args, out.String())
		}
	}
}
