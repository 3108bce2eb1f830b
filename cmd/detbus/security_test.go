package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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
		{Name: "bank-worker", Password: "w-pw", Sources: []string{"bank.decisions", "bank.decisions.rejected", "bank.decisions.checkpoints.>"},
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

// writeUsers writes users as an --auth file and returns its path.
func writeUsers(t *testing.T, users transport.AuthConfig) string {
	t.Helper()
	data, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// uiAddr returns the HTTP address a node's banner names.
func uiAddr(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`kv UI:\s+http://([^/\s]+)/`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no kv UI address in:\n%s", out)
	}
	return m[1]
}

// TestServeHTTPWithUsers: a node with users answers its HTTP API only with
// credentials, on loopback too, and writes for each user only what the
// user may write on NATS; every role uses the kv commands its role allows.
func TestServeHTTPWithUsers(t *testing.T) {
	authFile := writeUsers(t, transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"kv.orders"}},
		{Name: "jobs-svc", Password: "j-pw", Sources: []string{"tasks.jobs"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader},
		{Name: "ops", Password: "ops-pw", Role: transport.RoleAdmin},
	}})
	url, out := startServe(t, "--auth", authFile)
	addr := uiAddr(t, out.String())
	req := func(method, path, body, user, pw string) int {
		t.Helper()
		r, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			r.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := req("GET", "/api/kv/tables", "", "", ""); got != http.StatusUnauthorized {
		t.Fatalf("the API without credentials on loopback: %d, want 401", got)
	}
	if got := req("POST", "/api/kv/tables", `{"name":"orders","crdt":"lww"}`, "ops", "ops-pw"); got != http.StatusCreated {
		t.Fatalf("the admin declares a table: %d", got)
	}
	if got := req("POST", "/api/kv/tables", `{"name":"users","crdt":"lww"}`, "orders-svc", "o-pw"); got != http.StatusForbidden {
		t.Fatalf("a source declares a table: %d, want 403", got)
	}
	if got := req("POST", "/api/kv/tables/orders/ops", `{"op":"set","key":"o1","value":1}`, "orders-svc", "o-pw"); got != http.StatusOK {
		t.Fatalf("a source writes its table: %d", got)
	}
	if got := req("POST", "/api/tasks/queues", `{"name":"payroll"}`, "orders-svc", "o-pw"); got != http.StatusForbidden {
		t.Fatalf("a source creates a queue: %d, want 403", got)
	}
	if got := req("POST", "/api/kv/tables/orders/ops", `{"op":"set","key":"o2","value":1}`, "audit", "a-pw"); got != http.StatusForbidden {
		t.Fatalf("a reader writes: %d, want 403", got)
	}
	// The CLI, as each role: reads for all, writes as the role allows.
	as := func(user, pw string, args ...string) (string, error) {
		return runCLI(t, append(append([]string{"kv"}, args...), "--nats", url, "--user", user, "--password", pw)...)
	}
	if got, err := as("audit", "a-pw", "get", "orders", "o1"); err != nil || got != "1\n" {
		t.Fatalf("kv get as the reader: %v %q", err, got)
	}
	if got, err := as("orders-svc", "o-pw", "set", "orders", "o3", "3"); err != nil {
		t.Fatalf("kv set as the source: %v %q", err, got)
	}
	if got, err := as("audit", "a-pw", "set", "orders", "o4", "4"); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("kv set as the reader: %v %q", err, got)
	}
	if got, err := as("orders-svc", "o-pw", "keys", "orders"); err != nil || got != "o1\no3\n" {
		t.Fatalf("kv keys as the source: %v %q", err, got)
	}
	cli := func(user, pw string, args ...string) (string, error) {
		return runCLI(t, append(args, "--nats", url, "--user", user, "--password", pw)...)
	}
	for _, args := range [][]string{{"tasks", "create", "jobs"}, {"tasks", "add", "jobs", `{"n":1}`, "--id", "j1"}} {
		if got, err := cli("jobs-svc", "j-pw", args...); err != nil {
			t.Fatalf("%v as the queue's source: %v %q", args, err, got)
		}
	}
	if got, err := cli("audit", "a-pw", "tasks", "list", "jobs"); err != nil || !strings.Contains(got, "j1") {
		t.Fatalf("tasks list as the reader: %v %q", err, got)
	}
	if got, err := cli("audit", "a-pw", "tasks", "show", "jobs", "j1"); err != nil || !strings.Contains(got, `"pending"`) {
		t.Fatalf("tasks show as the reader: %v %q", err, got)
	}
	if got, err := cli("audit", "a-pw", "tasks", "add", "jobs", `{"n":2}`); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("tasks add as the reader: %v %q", err, got)
	}
	if got, err := cli("audit", "a-pw", "tail", "kv.orders"); err != nil || strings.Count(got, "\n") != 2 {
		t.Fatalf("tail as the reader: %v %q", err, got)
	}
	if got, err := cli("audit", "a-pw", "status"); err != nil || !regexpLine(got, "kv.orders", "2") {
		t.Fatalf("status as the reader: %v %q", err, got)
	}
	ctx := context.Background()
	admin, err := transport.Connect(ctx, url, transport.Config{NoProvision: true}, transport.UserOptions("ops", "ops-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for esk, want := range map[string]uint64{"kv.users": 0, "tasks.payroll": 0, "kv.orders": 2} {
		if n, err := admin.Count(ctx, esk); err != nil || n != want {
			t.Fatalf("%s holds %d events (%v), want %d", esk, n, err, want)
		}
	}
}

// TestServeRefusesAPublicHostWithoutUsers: a node listening beyond
// loopback with no users would take anonymous writes from the network;
// serve refuses unless told --allow-anonymous.
func TestServeRefusesAPublicHostWithoutUsers(t *testing.T) {
	port := testnats.FreePorts(t, 1)[0]
	out, err := runCLI(t, "serve", "--host", "0.0.0.0", "--port", fmt.Sprint(port), "--http", "", "--data", t.TempDir())
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--allow-anonymous") {
		t.Fatalf("serve --host 0.0.0.0 without --auth: %v\n%s", err, out)
	}
	p := goRun(t, "serve public", "serve", "--host", "0.0.0.0", "--allow-anonymous", "--port", fmt.Sprint(port), "--http-port", "0", "--http", "", "--data", t.TempDir())
	p.waitOutput(t, 30*time.Second, "detbus node ready")
}

// TestConsumerAttackWithTheNatsCLI performs the attack as a source would
// with the nats CLI: store a forged request under its own ESK, then ask
// for a push consumer that delivers it to the node's append endpoint. The
// consumer is refused and nothing lands on the ESK the request names.
func TestConsumerAttackWithTheNatsCLI(t *testing.T) {
	cli := testnats.NatsCLI(t)
	authFile := writeUsers(t, transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"orders.>"}},
		{Name: "ops", Password: "ops-pw", Role: transport.RoleAdmin},
	}})
	url, _ := startServe(t, "--auth", authFile)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as := []string{"--user", "orders-svc", "--password", "o-pw", "--inbox-prefix", transport.InboxPrefix("orders-svc"), "--timeout", "2s"}
	pub := testnats.NatsCommand(t, ctx, cli, url, append(as, "pub", "-J", "events.orders.evil",
		`{"esk":"kv.users","event":{"op":"set","key":"root","value":"mallory"}}`)...)
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("the source publishes to its own ESK: %v\n%s", err, out)
	}
	add := testnats.NatsCommand(t, ctx, cli, url, append(as, "consumer", "add", "EVENTS", "evil", "--target", transport.SubjectAppend,
		"--deliver-group", "q", "--filter", "events.orders.evil", "--deliver", "all", "--ack", "none", "--replay", "instant", "--defaults")...)
	out, err := add.CombinedOutput()
	if err == nil {
		t.Fatalf("the nats CLI made the source's consumer:\n%s", out)
	}
	admin, err := transport.Connect(ctx, url, transport.Config{NoProvision: true}, transport.UserOptions("ops", "ops-pw")...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if n, err := admin.Count(ctx, "kv.users"); err != nil || n != 0 {
		t.Fatalf("kv.users holds %d events (%v)", n, err)
	}
	st, err := admin.JetStream().Stream(ctx, transport.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Consumer(ctx, "evil"); err == nil {
		t.Fatal("the stream has the source's consumer")
	}
}
