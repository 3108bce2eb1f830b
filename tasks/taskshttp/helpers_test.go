package taskshttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/taskshttp"
	"github.com/detbus/detbus/transport"
)

// env is a tasks client on a real embedded NATS node, served by the
// handler under test on a loopback httptest server, in the node's UI
// shell behind web.Protect, as a node serves it.
type env struct {
	t      *testing.T
	log    *transport.Log
	client *tasks.Client
	url    string // the HTTP server's base URL
}

type envConfig struct {
	opts  taskshttp.Options
	token string // the token web.Protect requires ("": none)
	// ui also opens a kv store on the log and serves its API, as
	// `detbus serve` does: the kv page, the first of the UI, needs it.
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
	apis := []web.API{{Prefix: taskshttp.APIPrefix, Handler: h}}
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
		apis = append(apis, web.API{Prefix: kvhttp.APIPrefix, Handler: kh})
	}
	e.url = apitest.ServeNode(t, []web.Page{kvhttp.Page(), taskshttp.Page()}, apis, web.Access{Token: cfg.token})
	return e
}

var ctxT = apitest.Ctx

// reply is a decoded JSON response.
type reply = apitest.Reply

// ids returns the "id" of each task in a page.
func ids(r reply) []string {
	var out []string
	for _, t := range r.List("tasks") {
		s, _ := t["id"].(string)
		out = append(out, s)
	}
	return out
}

// do sends a request with an optional JSON body (sent as is) and decodes
// a JSON answer. headers are "Name: value".
func (e *env) do(method, path, body string, headers ...string) reply {
	e.t.Helper()
	return apitest.Do(e.t, e.url, method, path, body, headers...)
}

// waitTask polls the API until the task is in state.
func (e *env) waitTask(queue, id, state string) reply {
	e.t.Helper()
	var last reply
	testnats.WaitFor(e.t, 20*time.Second, fmt.Sprintf("task %s/%s %s", queue, id, state), func() error {
		last = e.do("GET", "/api/tasks/queues/"+queue+"/tasks/"+id, "")
		if last.Status != http.StatusOK {
			return errors.New(string(last.Raw))
		}
		if got := last.Str("state"); got != state {
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
