package taskshttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/taskshttp"
	"github.com/detbus/detbus/transport"
)

// env is a tasks client on a real embedded NATS node, served by the
// handler under test on a loopback httptest server, behind kvhttp.Protect
// as a node serves it.
type env struct {
	t      *testing.T
	log    *transport.Log
	client *tasks.Client
	url    string // the HTTP server's base URL
}

type envConfig struct {
	opts  taskshttp.Options
	token string // the token kvhttp.Protect requires ("": none)
	// ui also opens a kv store on the log and serves its handler, which
	// holds the browser UI, at the other paths, as `detbus serve` does.
	ui bool
}

// newEnv starts a node, opens a client on it and serves the handler.
// Everything stops at cleanup: the requests first, then the client, then
// NATS.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	node := testnats.Node(t)
	e := &env{t: t, log: testnats.Log(t, node.ClientURL(), transport.Config{})}
	c, err := tasks.Open(ctxT(t), e.log, tasks.Options{})
	if err != nil {
		t.Fatalf("open the tasks client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	e.client = c
	h, err := taskshttp.New(c, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/tasks/", h)
	if cfg.ui {
		store, err := kv.Open(ctxT(t), e.log, kv.Options{Replica: "test", SnapshotEvery: -1, SnapshotInterval: -1})
		if err != nil {
			t.Fatalf("open the kv store: %v", err)
		}
		t.Cleanup(func() { store.Close() })
		kh, err := kvhttp.New(store, kvhttp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/", kh)
	}
	protected, err := kvhttp.Protect(mux, cfg.token)
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, stopRequests := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(protected)
	srv.Config.BaseContext = func(net.Listener) context.Context { return reqCtx }
	srv.Start()
	t.Cleanup(func() {
		stopRequests()
		srv.Close()
	})
	e.url = srv.URL
	return e
}

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reply is a decoded JSON response.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// at returns the value at a dotted path of the body ("queue.tasks.pending").
func (r reply) at(path string) any {
	var cur any = r.body
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func (r reply) str(path string) string {
	v, _ := r.at(path).(string)
	return v
}

func (r reply) num(path string) float64 {
	v, _ := r.at(path).(float64)
	return v
}

// list returns the objects of the array at path.
func (r reply) list(path string) []map[string]any {
	arr, _ := r.at(path).([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, x := range arr {
		m, _ := x.(map[string]any)
		out = append(out, m)
	}
	return out
}

// ids returns the "id" of each task in the page.
func (r reply) ids() []string {
	var out []string
	for _, t := range r.list("tasks") {
		s, _ := t["id"].(string)
		out = append(out, s)
	}
	return out
}

// do sends a request with an optional JSON body (sent as is) and decodes
// a JSON answer. headers are "Name: value".
func (e *env) do(method, path, body string, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctxT(e.t), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return r
}

// want checks a reply's status and, for an error, that its JSON body
// names every fragment.
func (r reply) want(t *testing.T, status int, fragments ...string) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if status >= 400 && (r.body == nil || r.str("error") == "") {
		t.Fatalf("status %d without a JSON error body: %q (Content-Type %q)", status, r.raw, r.header.Get("Content-Type"))
	}
	for _, f := range fragments {
		if !bytes.Contains(r.raw, []byte(f)) {
			t.Fatalf("answer lacks %q: %s", f, r.raw)
		}
	}
	return r
}

// waitTask polls the API until the task is in state.
func (e *env) waitTask(queue, id, state string) reply {
	e.t.Helper()
	var last reply
	testnats.WaitFor(e.t, 20*time.Second, fmt.Sprintf("task %s/%s %s", queue, id, state), func() error {
		last = e.do("GET", "/api/tasks/queues/"+queue+"/tasks/"+id, "")
		if last.status != http.StatusOK {
			return errors.New(string(last.raw))
		}
		if got := last.str("state"); got != state {
			return fmt.Errorf("state %s", got)
		}
		return nil
	})
	return last
}

// runWorker runs a worker until the test ends.
func runWorker(t *testing.T, w *tasks.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, tasks.ErrClosed) {
			t.Errorf("worker %s: %v", w.ID(), err)
		}
	})
}
