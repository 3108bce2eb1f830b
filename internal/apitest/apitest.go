// Package apitest serves a handler under test on a loopback server and
// sends it requests whose JSON answers the test reads by dotted paths. The
// HTTP tests of kv/kvhttp and tasks/taskshttp share it.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Ctx returns a context that ends after 30s or with the test.
func Ctx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Serve serves h on a loopback httptest server and returns its base URL.
// At cleanup the requests end first, event streams included, then the
// server closes.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	reqCtx, stopRequests := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = func(net.Listener) context.Context { return reqCtx }
	srv.Start()
	t.Cleanup(func() {
		stopRequests()
		srv.Close()
	})
	return srv.URL
}

// Reply is an answer, its body decoded when it is JSON.
type Reply struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// At returns the value at a dotted path of the body ("queue.tasks.pending"),
// nil when there is none.
func (r Reply) At(path string) any {
	var cur any = r.Body
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// Str returns the string at path, "" when there is none.
func (r Reply) Str(path string) string {
	v, _ := r.At(path).(string)
	return v
}

// Num returns the number at path, 0 when there is none.
func (r Reply) Num(path string) float64 {
	v, _ := r.At(path).(float64)
	return v
}

// List returns the objects of the array at path.
func (r Reply) List(path string) []map[string]any {
	arr, _ := r.At(path).([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, x := range arr {
		m, _ := x.(map[string]any)
		out = append(out, m)
	}
	return out
}

// Want checks the status and, for an error, that the body is a JSON error;
// and that the body names every fragment.
func (r Reply) Want(t testing.TB, status int, fragments ...string) Reply {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	if status >= 400 && (r.Body == nil || r.Str("error") == "") {
		t.Fatalf("status %d without a JSON error body: %q (Content-Type %q)", status, r.Raw, r.Header.Get("Content-Type"))
	}
	for _, f := range fragments {
		if !bytes.Contains(r.Raw, []byte(f)) {
			t.Fatalf("answer lacks %q: %s", f, r.Raw)
		}
	}
	return r
}

// Do sends a request to baseURL+path with an optional JSON body (sent as
// is) and headers of the form "Name: value".
func Do(t testing.TB, baseURL, method, path, body string, headers ...string) Reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(Ctx(t), method, baseURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	return Send(t, req)
}

// Send sends req without following redirects and reads the answer.
func Send(t testing.TB, req *http.Request) Reply {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := Reply{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v\n%s", req.Method, req.URL, err, raw)
		}
	}
	return r
}
