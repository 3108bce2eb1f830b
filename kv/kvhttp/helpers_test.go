package kvhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/detbus/detbus/transport"
)

// env is a kv store on a real embedded NATS node, served by the handler
// under test on a loopback httptest server.
type env struct {
	t     *testing.T
	nats  *transport.Server
	log   *transport.Log
	store *kv.Store
	srv   *httptest.Server
	url   string // the HTTP server's base URL
}

type envConfig struct {
	opts   kvhttp.Options
	token  string           // the token kvhttp.Protect requires ("": none)
	logCfg transport.Config // the store's log
}

// newEnv starts a node, opens a store on it and serves the handler,
// wrapped in kvhttp.Protect(token). Everything stops at cleanup: the
// requests first (event streams included), then the store, then NATS.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t, nats: testnats.Node(t)}
	e.log = testnats.Log(t, e.nats.ClientURL(), cfg.logCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := kv.Open(ctx, e.log, kv.Options{Replica: "test", SnapshotEvery: -1, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	h, err := kvhttp.New(store, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	protected, err := kvhttp.Protect(h, cfg.token)
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, stopRequests := context.WithCancel(context.Background())
	e.srv = httptest.NewUnstartedServer(protected)
	e.srv.Config.BaseContext = func(net.Listener) context.Context { return reqCtx }
	e.srv.Start()
	t.Cleanup(func() {
		stopRequests()
		e.srv.Close()
	})
	e.url = e.srv.URL
	return e
}

func ctxT(t *testing.T) context.Context {
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

// str returns the string at a dotted path of the body ("table.name").
func (r reply) str(path string) string {
	v, _ := r.at(path).(string)
	return v
}

func (r reply) num(path string) float64 {
	v, _ := r.at(path).(float64)
	return v
}

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

// do sends a request with an optional JSON body (a string, sent as is)
// and decodes a JSON answer. headers are "Name: value".
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
	return e.send(req)
}

func (e *env) send(req *http.Request) reply {
	e.t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: answer is not JSON: %v\n%s", req.Method, req.URL, err, raw)
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
	if status >= 400 {
		if r.body == nil || r.str("error") == "" {
			t.Fatalf("status %d without a JSON error body: %q (Content-Type %q)", status, r.raw, r.header.Get("Content-Type"))
		}
	}
	for _, f := range fragments {
		if !bytes.Contains(r.raw, []byte(f)) {
			t.Fatalf("answer lacks %q: %s", f, r.raw)
		}
	}
	return r
}

// createTable declares a table through the API.
func (e *env) createTable(name string, typ kv.Type) {
	e.t.Helper()
	e.do("POST", "/api/kv/tables", `{"name":"`+name+`","crdt":"`+string(typ)+`"}`).want(e.t, http.StatusCreated)
}

// waitKey polls the API until table/key has a value whose JSON contains
// want.
func (e *env) waitKey(table, key, want string) reply {
	e.t.Helper()
	var last reply
	testnats.WaitFor(e.t, 20*time.Second, table+"/"+key+" = "+want, func() error {
		last = e.do("GET", "/api/kv/tables/"+table+"/keys/"+key, "")
		if last.status != http.StatusOK {
			return errors.New(string(last.raw))
		}
		if got, _ := json.Marshal(last.at("value")); !bytes.Contains(got, []byte(want)) {
			return errors.New("value " + string(got))
		}
		return nil
	})
	return last
}
