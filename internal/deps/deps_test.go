// Package deps_test holds the import rules of the module: the pure floors
// never link NATS, and only transport speaks to it.
package deps_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/detbus/detbus/"

func goList(t *testing.T, field, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{join ."+field+" \"\\n\"}}", module+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestPureFloorsDoNotLinkNATS: the CRDT types, the task state machine and
// the hybrid logical clock are deterministic and testable without a
// server; nothing they link may speak to NATS.
func TestPureFloorsDoNotLinkNATS(t *testing.T) {
	for _, pkg := range []string{"hlc", "kv/crdt", "tasks/machine"} {
		for _, dep := range goList(t, "Deps", pkg) {
			if strings.HasPrefix(dep, "github.com/nats-io/") || dep == module+"transport" {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}

// TestOnlyTransportSpeaksToNATS: kv, tasks, transform, the fold they
// share and the node's HTTP shell ask transport for what they need
// (publishing, reading, buckets) and import no NATS client package
// themselves.
func TestOnlyTransportSpeaksToNATS(t *testing.T) {
	for _, pkg := range []string{"kv", "tasks", "transform", "transform/worker", "kv/kvhttp", "tasks/taskshttp", "internal/node/web", "transform/board", "internal/fold", "internal/node/loghttp"} {
		for _, imp := range goList(t, "Imports", pkg) {
			if strings.HasPrefix(imp, "github.com/nats-io/nats.go") || strings.HasPrefix(imp, "github.com/nats-io/nats-server") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
}
