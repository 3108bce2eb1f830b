package kv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const natsCLIHint = "the nats CLI was not found: run scripts/install-tools.sh (it installs it into .tools/bin), or set DETBUS_NATS_CLI to its path"

// natsCLI returns the path of the nats command-line client: $DETBUS_NATS_CLI,
// else .tools/bin/nats at the module root, else nats on the PATH. Without
// one the test is skipped, or fails when $CI is set.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DETBUS_NATS_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("DETBUS_NATS_CLI=%s: %v", p, err)
		}
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				p := filepath.Join(dir, ".tools", "bin", "nats")
				if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
					return p
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
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

// natsPub publishes body to subject with the nats CLI (plain, or with
// JetStream acknowledgement when js is set).
func natsPub(t *testing.T, ctx context.Context, cli, url, subject, body string, js bool) {
	t.Helper()
	args := []string{"--server", url, "pub"}
	if js {
		args = append(args, "-J")
	}
	args = append(args, subject, body)
	cmd := exec.CommandContext(ctx, cli, args...)
	// Keep the user's saved nats contexts out of the way.
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "NATS_CONTEXT=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nats %v: %v\n%s", args, err, out)
	}
}

// TestNatsCLIOps declares a table and writes ops with the plain nats CLI,
// as the package documentation shows, and reads them back.
func TestNatsCLIOps(t *testing.T) {
	t.Parallel()
	cli := natsCLI(t)
	srv, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	url := srv.ClientURL()
	natsPub(t, ctx, cli, url, "events.kv._config", `{"op":"set","key":"users","value":{"crdt":"lww"}}`, true)
	natsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"alice","value":{"age":3}}`, false)
	natsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"bob","value":`, true) // malformed
	natsPub(t, ctx, cli, url, "events.kv.users", `{"op":"set","key":"bob","value":[1,2]}`, true)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getValue(t, s, "users", "alice"); got != `{"age":3}` {
		t.Errorf("users/alice = %s", got)
	}
	if got := getValue(t, s, "users", "bob"); got != `[1,2]` {
		t.Errorf("users/bob = %s", got)
	}
	rej := s.Rejections("users")
	if len(rej) != 1 || rej[0].Position.Index != 1 || !strings.Contains(rej[0].Reason, "unexpected end") {
		t.Errorf("rejections: %+v", rej)
	}
}
