package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// kvNode starts an embedded server with the log's stream and returns its
// URL.
func kvNode(t *testing.T) string {
	t.Helper()
	srv := testnats.Node(t)
	testnats.Log(t, srv.ClientURL(), transport.Config{}) // provisions the stream
	return srv.ClientURL()
}

// kvRun runs `detbus kv` against url and fails the test on error.
func kvRun(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, err := runCLI(t, append(append([]string{"kv"}, args...), "--nats", url)...)
	if err != nil {
		t.Fatalf("detbus kv %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestKVCommands runs the kv commands against a node: writes fold in the
// command, reads are answered by the node's store.
func TestKVCommands(t *testing.T) {
	t.Parallel()
	url, _ := startServe(t)
	for _, c := range [][]string{
		{"create", "users", "lww"}, {"create", "tags", "orset"}, {"create", "hits", "counter"},
		{"create", "profiles", "map"}, {"create", "docs", "mvreg"},
	} {
		kvRun(t, url, c...)
	}
	out := kvRun(t, url, "set", "users", "alice", `{"age":3}`)
	var pos struct {
		Table, Key, ESK string
		Index, Seq      uint64
	}
	if err := json.Unmarshal([]byte(out), &pos); err != nil || pos.ESK != "kv.users" || pos.Index != 0 || pos.Seq != 6 || pos.Key != "alice" {
		t.Errorf("set printed %q (%v)", out, err)
	}
	// Each command is a new process with a new store: reads catch up.
	if got := kvRun(t, url, "get", "users", "alice"); got != "{\"age\":3}\n" {
		t.Errorf("get users alice: %q", got)
	}
	kvRun(t, url, "set", "users", "bob", `"b"`)
	kvRun(t, url, "delete", "users", "bob")
	if got := kvRun(t, url, "get", "users", "bob"); got != "null\n" {
		t.Errorf("deleted key: %q", got)
	}
	kvRun(t, url, "add", "tags", "k", "x")
	kvRun(t, url, "add", "tags", "k", "y")
	kvRun(t, url, "remove", "tags", "k", "x")
	kvRun(t, url, "incr", "hits", "home")
	kvRun(t, url, "incr", "hits", "home", "5")
	kvRun(t, url, "incr", "hits", "home", "-2")
	kvRun(t, url, "set", "profiles", "alice", "name", `"Alice"`)
	kvRun(t, url, "incr", "profiles", "alice", "visits")
	kvRun(t, url, "incr", "profiles", "alice", "visits", "-3")
	kvRun(t, url, "set", "profiles", "alice", "old", `1`)
	kvRun(t, url, "remove", "profiles", "alice", "old")
	kvRun(t, url, "set", "docs", "d", `[1]`)
	for _, tc := range []struct{ table, key, want string }{
		{"tags", "k", `["y"]`},
		{"hits", "home", `4`},
		{"profiles", "alice", `{"name":"Alice","visits":-2}`},
		{"docs", "d", `[[1]]`},
	} {
		if got := kvRun(t, url, "get", tc.table, tc.key); got != tc.want+"\n" {
			t.Errorf("get %s %s: %q, want %s", tc.table, tc.key, got, tc.want)
		}
	}
	var v struct {
		Type   string
		Exists bool
		Meta   json.RawMessage
	}
	if err := json.Unmarshal([]byte(kvRun(t, url, "get", "users", "alice", "--json")), &v); err != nil || v.Type != "lww" || !v.Exists || len(v.Meta) == 0 {
		t.Errorf("get --json: %+v, %v", v, err)
	}
	if got := kvRun(t, url, "keys", "users"); got != "alice\n" {
		t.Errorf("keys users: %q", got)
	}
	for _, k := range []string{"b", "c", "d"} {
		kvRun(t, url, "set", "users", k, "1")
	}
	if got := kvRun(t, url, "keys", "users", "--after", "alice", "--limit", "2"); got != "b\nc\n" {
		t.Errorf("keys --after alice --limit 2: %q", got)
	}
	tables := kvRun(t, url, "tables")
	for _, want := range []string{"TABLE TYPE KEYS OPS REJECTED", "_config lww 5 5 0", "users lww 4 6 0", "hits counter 1 3 0"} {
		found := false
		for _, line := range strings.Split(tables, "\n") {
			found = found || strings.Join(strings.Fields(line), " ") == want
		}
		if !found {
			t.Errorf("tables lacks the row %q:\n%s", want, tables)
		}
	}
}

// TestKVReadsWithoutANode: with no node serving the store, the read
// commands fold the log in the command and say so on stderr.
func TestKVReadsWithoutANode(t *testing.T) {
	t.Parallel()
	url := kvNode(t)
	kvRun(t, url, "create", "users", "lww")
	kvRun(t, url, "set", "users", "alice", `1`)
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, []string{"kv", "get", "users", "alice", "--nats", url}, &out, &errOut); err != nil {
		t.Fatalf("kv get: %v\n%s", err, errOut.String())
	}
	if out.String() != "1\n" || !strings.Contains(errOut.String(), "no node serves the store; folding the log here") {
		t.Fatalf("kv get without a node: stdout %q, stderr %q", out.String(), errOut.String())
	}
}

func TestKVCommandErrors(t *testing.T) {
	t.Parallel()
	url := kvNode(t)
	kvRun(t, url, "create", "users", "lww")
	kvRun(t, url, "create", "hits", "counter")
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{}, "no command given", 2},
		{[]string{"frob"}, `unknown command "frob"`, 2},
		{[]string{"get", "users"}, "takes 2 argument(s)", 2},
		{[]string{"set", "users", "alice", `{"age":`}, "the value for users/alice is not valid JSON (unexpected end of JSON input)", 2},
		{[]string{"set", "users", "alice", `hello`}, "not valid JSON (invalid character 'h' looking for beginning of value); quote strings", 2},
		{[]string{"set", "a.b", "k", "1"}, `table name "a.b" contains a dot`, 2},
		{[]string{"create", "x", "tree"}, `unknown table type "tree"`, 2},
		{[]string{"create", "users", "counter"}, `table "users" is declared lww`, 2},
		{[]string{"add", "users", "k", "x"}, "add is not an op of an lww table", 2},
		{[]string{"incr", "hits", "k", "x"}, `delta "x" is not an integer`, 2},
		{[]string{"set", "hits", "k", "1"}, "set is not an op of a counter table", 2},
		{[]string{"set", "nope", "k", "1"}, `no such table: "nope"`, 1},
		{[]string{"get", "nope", "k"}, `no such table: "nope"`, 1},
		{[]string{"get", "users", "zed"}, `no such key: "zed" in table "users"`, 1},
		{[]string{"keys", "users", "--limit", "-1"}, "--limit must not be negative", 2},
	} {
		args := append([]string{"kv"}, tc.args...)
		if len(tc.args) > 0 {
			args = append(args, "--nats", url)
		}
		out, err := runCLI(t, args...)
		var buf bytes.Buffer
		code := exitCode(err, &buf)
		if code != tc.code || !strings.Contains(buf.String(), tc.want) {
			t.Errorf("kv %q: exit %d, %q (output %q); want exit %d and %q", tc.args, code, buf.String(), out, tc.code, tc.want)
		}
	}
	// An op published by another tool that the fold rejects is shown.
	l := testnats.Log(t, url, transport.Config{})
	if _, err := l.Write(t.Context(), "kv.users", []byte(`{"op":"set","key":"x"}`)); err != nil {
		t.Fatal(err)
	}
	out := kvRun(t, url, "rejections", "users")
	if !strings.Contains(out, `set on an lww table needs a "value"`) {
		t.Errorf("rejections: %q", out)
	}
	var row []string
	for _, line := range strings.Split(kvRun(t, url, "tables"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "users" {
			row = f
		}
	}
	if strings.Join(row, " ") != "users lww 0 0 1" {
		t.Errorf("tables after a rejection: users row %q", row)
	}
}

// TestKVGetMissingTableSaysOnlyThat: a read of a table that does not
// exist, folded here for want of a node, prints that it folds and the
// error, and nothing else (no warning of the store it closes).
func TestKVGetMissingTableSaysOnlyThat(t *testing.T) {
	t.Parallel()
	url := kvNode(t)
	for range 5 {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := run(ctx, []string{"kv", "get", "nope", "k", "--nats", url}, &out, &errOut)
		cancel()
		if err == nil || !strings.Contains(err.Error(), `no such table: "nope"`) {
			t.Fatalf("kv get of a missing table: %v", err)
		}
		if out.Len() != 0 || errOut.String() != "kv: no node serves the store; folding the log here\n" {
			t.Fatalf("kv get of a missing table printed\n%s\nand on stderr\n%s", out.String(), errOut.String())
		}
	}
}
