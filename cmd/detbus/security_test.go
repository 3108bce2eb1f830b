package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestServeWithUsers runs a node that requires users: each source writes
// only its own ESKs from the CLI and the SDK, a bank worker process with a
// worker's rights produces every decision, and a reader reads.
func TestServeWithUsers(t *testing.T) {
	users := transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"orders.>"}},
		{Name: "bank-client", Password: "c-pw", Sources: []string{"bank.commands.>"}},
		{Name: "bank-worker", Password: "w-pw", Sources: []string{"bank.decisions", "bank.decisions.rejected"},
			Buckets: []string{"detbus-snapshots", "detbus-status"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader, Buckets: []string{"detbus-status"}},
	}}
	data, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	url, out := startServe(t, "--auth", authFile)
	if !strings.Contains(out.String(), "4 users") {
		t.Fatalf("serve does not say it requires users:\n%s", out)
	}

	as := func(user, pw string) []string { return []string{"--nats", url, "--user", user, "--password", pw} }
	if got, err := runCLI(t, append([]string{"write", "orders.1", `{"qty":1}`}, as("orders-svc", "o-pw")...)...); err != nil {
		t.Fatalf("a source writes its own ESK: %v\n%s", err, got)
	}
	got, err := runCLI(t, append([]string{"write", "payments.1", `{"qty":1}`}, as("orders-svc", "o-pw")...)...)
	if !errors.Is(err, transport.ErrForbidden) || !strings.Contains(err.Error(), `may not write ESK "payments.1"`) {
		t.Fatalf("a source writes another's ESK: %v\n%s", err, got)
	}
	got, err = runCLI(t, "write", "orders.1", `{}`, "--nats", url)
	if !errors.Is(err, transport.ErrForbidden) || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("a client without credentials: %v\n%s", err, got)
	}
	got, err = runCLI(t, append([]string{"write", "orders.1", `{}`}, as("orders-svc", "wrong")...)...)
	if !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a wrong password: %v\n%s", err, got)
	}

	ctx := context.Background()
	client, err := transport.Connect(ctx, url, transport.Config{NoProvision: true}, transport.UserOptions("bank-client", "c-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const commands = 30
	writeBankCommands(t, client, rand.New(rand.NewPCG(7, 7)), 0, commands)

	w := startWorker(t, url, "bank", "secured-1", "--user", "bank-worker", "--password", "w-pw")
	audit, err := transport.Connect(ctx, url, transport.Config{NoProvision: true}, transport.UserOptions("audit", "a-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	testnats.WaitFor(t, 60*time.Second, "decisions from the worker", func() error {
		n, err := audit.Count(ctx, "bank.decisions")
		if err != nil {
			return err
		}
		if n != commands {
			return fmt.Errorf("%d decisions of %d\n%s", n, commands, w.out)
		}
		return nil
	})
	// The worker's credentials write its output only.
	worker, err := transport.Connect(ctx, url, transport.Config{NoProvision: true}, transport.UserOptions("bank-worker", "w-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	if _, err := worker.Write(ctx, "bank.commands.alice", []byte(`{"op":"deposit","id":"x","account":"alice","amount":1}`)); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a worker writes an input ESK: %v", err)
	}
	if _, err := audit.Write(ctx, "orders.2", []byte(`{}`)); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a reader writes: %v", err)
	}
	if got, err := runCLI(t, append([]string{"status"}, as("audit", "a-pw")...)...); err != nil || !regexpLine(got, "bank.decisions", fmt.Sprint(commands)) {
		t.Fatalf("status as a reader: %v\n%s", err, got)
	}
	if n, err := audit.Count(ctx, "payments.1"); err != nil || n != 0 {
		t.Fatalf("payments.1 has %d events (%v) after refused writes", n, err)
	}
}

func TestServeAuthFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"not json":      {`users: []`, "not a users file"},
		"unknown field": {`{"users":[{"name":"a","password":"p","source":["a.>"]}]}`, `unknown field "source"`},
		"no users":      {`{"users":[]}`, "lists no users"},
		"bad source":    {`{"users":[{"name":"a","password":"p","sources":["a.>.b"]}]}`, `source "a.>.b"`},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(f, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runCLI(t, "serve", "--auth", f, "--port", "-1", "--http", "", "--data", t.TempDir())
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a usage error mentioning %q\n%s", name, err, tc.want, out)
		}
	}
}
