package testnats

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// natsCLIHint says how to get the nats CLI.
const natsCLIHint = "the nats CLI was not found: run scripts/install-tools.sh (it installs it into .tools/bin), or set DETBUS_NATS_CLI to its path"

// NatsCLI returns the path of the nats command-line client:
// $DETBUS_NATS_CLI, else .tools/bin/nats at the module root (where
// scripts/install-tools.sh puts it), else nats on the PATH. Without one
// the test is skipped, or fails when $CI is set: CI installs the CLI, so
// there its absence is a fault.
func NatsCLI(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("DETBUS_NATS_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("DETBUS_NATS_CLI=%s: %v", p, err)
		}
		return p
	}
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, ".tools", "bin", "nats")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal(natsCLIHint)
	}
	t.Skip(natsCLIHint)
	return ""
}

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// NatsCommand returns the nats CLI at cli run with args against url, with
// the user's saved nats contexts kept out of the way.
func NatsCommand(t testing.TB, ctx context.Context, cli, url string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, cli, append([]string{"--server", url}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "NATS_CONTEXT=")
	return cmd
}

// NatsPub publishes body to subject with `nats pub`, each header a
// "Key:Value" for -H. With js it waits for the JetStream acknowledgement
// (-J); without, it is a plain core publish. The test fails if the CLI
// does.
func NatsPub(t testing.TB, ctx context.Context, cli, url, subject, body string, js bool, headers ...string) {
	t.Helper()
	args := []string{"pub"}
	if js {
		args = append(args, "-J")
	}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, subject, body)
	if out, err := NatsCommand(t, ctx, cli, url, args...).CombinedOutput(); err != nil {
		t.Fatalf("nats %v: %v\n%s", args, err, out)
	}
}
