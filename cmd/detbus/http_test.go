package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

const testToken = "serve-test-token-0123456789"

// uiURL returns the kv UI's URL from serve's banner.
func uiURL(t *testing.T, out *testnats.SyncBuffer) string {
	t.Helper()
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "kv" && f[1] == "UI:" {
			return strings.TrimSuffix(f[2], "/")
		}
	}
	t.Fatalf("no kv UI URL in:\n%s", out.String())
	return ""
}

// httpDo sends a request with an optional bearer token and returns the
// status and body.
func httpDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeKVAPI: a node serves the kv API and UI on its --http address
// beside /metrics and /healthz, and its banner names the UI.
func TestServeKVAPI(t *testing.T) {
	_, out := startServe(t)
	base := uiURL(t, out)
	if st, body := httpDo(t, "POST", base+"/api/kv/tables", "", `{"name":"users","crdt":"lww"}`); st != http.StatusCreated {
		t.Fatalf("create a table: %d %s", st, body)
	}
	if st, body := httpDo(t, "POST", base+"/api/kv/tables/users/ops", "", `{"op":"set","key":"alice","value":3}`); st != http.StatusOK || !strings.Contains(body, `"value":3`) {
		t.Fatalf("put: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/", "", ""); st != http.StatusOK || !strings.Contains(body, "<title>detbus kv</title>") {
		t.Fatalf("UI: %d %.200s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/healthz", "", ""); st != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/metrics", "", ""); st != http.StatusOK {
		t.Fatalf("metrics: %d %.200s", st, body)
	}
}

// TestServeTasksAPI: a node serves the tasks API under /api/tasks beside
// the kv API, on a tasks client of its own log, and the tasks page of the
// UI; its banner names the page.
func TestServeTasksAPI(t *testing.T) {
	_, out := startServe(t)
	base := uiURL(t, out)
	if !strings.Contains(out.String(), "tasks UI:    "+base+"/tasks") {
		t.Fatalf("the banner does not name the tasks page:\n%s", out.String())
	}
	if st, body := httpDo(t, "POST", base+"/api/tasks/queues", "", `{"name":"emails","max_attempts":3}`); st != http.StatusCreated || !strings.Contains(body, `"max_attempts":3`) {
		t.Fatalf("create a queue: %d %s", st, body)
	}
	if st, body := httpDo(t, "POST", base+"/api/tasks/queues/emails/tasks", "", `{"id":"t1","payload":{"to":"a@b"}}`); st != http.StatusCreated || !strings.Contains(body, `"state":"pending"`) {
		t.Fatalf("enqueue: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/api/tasks/queues", "", ""); st != http.StatusOK || !strings.Contains(body, `"pending":1`) {
		t.Fatalf("queues: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/api/tasks/queues/nope/tasks", "", ""); st != http.StatusNotFound || !strings.Contains(body, `"error"`) {
		t.Fatalf("an unknown queue: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/tasks", "", ""); st != http.StatusOK || !strings.Contains(body, "<title>detbus tasks</title>") {
		t.Fatalf("tasks page: %d %.200s", st, body)
	}
}

// TestServeHTTPToken: with --http-token, the API, the UI and /metrics
// need the token; /healthz does not.
func TestServeHTTPToken(t *testing.T) {
	_, out := startServe(t, "--http-token", testToken)
	base := uiURL(t, out)
	if !strings.Contains(out.String(), "?token=") {
		t.Fatalf("the banner does not say how to pass the token:\n%s", out.String())
	}
	if strings.Contains(out.String(), testToken) {
		t.Fatalf("the banner prints the token:\n%s", out.String())
	}
	for _, path := range []string{"/api/kv/tables", "/", "/metrics", "/api/tasks/queues", "/tasks"} {
		if st, body := httpDo(t, "GET", base+path, "", ""); st != http.StatusUnauthorized {
			t.Fatalf("GET %s without the token: %d %.200s", path, st, body)
		}
		if st, body := httpDo(t, "GET", base+path, "wrong-token-wrong-token", ""); st != http.StatusUnauthorized {
			t.Fatalf("GET %s with a wrong token: %d %.200s", path, st, body)
		}
		if st, body := httpDo(t, "GET", base+path, testToken, ""); st != http.StatusOK {
			t.Fatalf("GET %s with the token: %d %.200s", path, st, body)
		}
	}
	if st, body := httpDo(t, "POST", base+"/api/kv/tables", "", `{"name":"users","crdt":"lww"}`); st != http.StatusUnauthorized {
		t.Fatalf("create without the token: %d %s", st, body)
	}
	if st, body := httpDo(t, "POST", base+"/api/kv/tables", testToken, `{"name":"users","crdt":"lww"}`); st != http.StatusCreated {
		t.Fatalf("create with the token: %d %s", st, body)
	}
	if st, _ := httpDo(t, "GET", base+"/healthz", "", ""); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
}

// TestServeRefusesPublicHTTPWithoutToken: --http beyond loopback needs a
// token, from the flag or $DETBUS_HTTP_TOKEN; a short token is refused.
func TestServeRefusesPublicHTTPWithoutToken(t *testing.T) {
	t.Setenv("DETBUS_HTTP_TOKEN", "")
	serve := func(extra ...string) error {
		port := testnats.FreePorts(t, 1)[0]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out testnats.SyncBuffer
		return run(ctx, append([]string{"serve", "--port", fmt.Sprint(port), "--http-port", "0", "--data", t.TempDir()}, extra...), &out, &out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--http", "0.0.0.0:0"}, "--http-token"},
		{[]string{"--http", ":0"}, "beyond loopback"},
		{[]string{"--http", "127.0.0.1:0", "--http-token", "short"}, "at least 16"},
	} {
		err := serve(tc.args...)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("serve %v: %v, want a usage error naming %q", tc.args, err, tc.want)
		}
	}
}

// TestServeTokenFromEnv: $DETBUS_HTTP_TOKEN lets a node listen on every
// interface, and guards it.
func TestServeTokenFromEnv(t *testing.T) {
	t.Setenv("DETBUS_HTTP_TOKEN", testToken)
	_, out := startServe(t, "--http", "0.0.0.0:0")
	base := uiURL(t, out)
	port := base[strings.LastIndex(base, ":")+1:]
	local := "http://127.0.0.1:" + port
	if st, _ := httpDo(t, "GET", local+"/api/kv/tables", "", ""); st != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", st)
	}
	if st, body := httpDo(t, "GET", local+"/api/kv/tables", testToken, ""); st != http.StatusOK || !strings.Contains(body, `"_config"`) {
		t.Fatalf("with the token: %d %s", st, body)
	}
}
