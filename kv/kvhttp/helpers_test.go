package kvhttp_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/tasks/taskshttp"
	"github.com/detbus/detbus/transport"
)

// env is a kv store on a real embedded NATS node, served by the handler
// under test on a loopback httptest server, in the node's UI shell beside
// the kv and tasks pages, as `detbus serve` serves it.
type env struct {
	t     *testing.T
	nats  *transport.Server
	log   *transport.Log
	store *kv.Store
	url   string // the HTTP server's base URL
}

type envConfig struct {
	opts   kvhttp.Options
	token  string           // the token web.Protect requires ("": none)
	users  []transport.User // the users web.Protect knows
	logCfg transport.Config // the store's log
}

// newEnv starts a node, opens a store on it and serves the handler,
// wrapped in web.Protect(token). Everything stops at cleanup: the
// requests first (event streams included), then the store, then NATS.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t, nats: testnats.Node(t)}
	e.log = testnats.Log(t, e.nats.ClientURL(), cfg.logCfg)
	store, err := kv.Open(ctxT(t), e.log, kv.Options{Replica: "test", SnapshotEvery: -1, SnapshotInterval: -1})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	h, err := kvhttp.New(store, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.url = apitest.ServeNode(t, []web.Page{kvhttp.Page(), taskshttp.Page()}, []web.API{{Prefix: kvhttp.APIPrefix, Handler: h}},
		web.Access{Token: cfg.token, Users: cfg.users})
	return e
}

var ctxT = apitest.Ctx

// reply is a decoded JSON response.
type reply = apitest.Reply

// do sends a request with an optional JSON body (a string, sent as is)
// and decodes a JSON answer. headers are "Name: value".
func (e *env) do(method, path, body string, headers ...string) reply {
	e.t.Helper()
	return apitest.Do(e.t, e.url, method, path, body, headers...)
}

// createTable declares a table through the API.
func (e *env) createTable(name string, typ kv.Type) {
	e.t.Helper()
	e.do("POST", "/api/kv/tables", `{"name":"`+name+`","crdt":"`+string(typ)+`"}`).Want(e.t, http.StatusCreated)
}

// waitKey polls the API until table/key has a value whose JSON contains
// want.
func (e *env) waitKey(table, key, want string) reply {
	e.t.Helper()
	var last reply
	testnats.WaitFor(e.t, 20*time.Second, table+"/"+key+" = "+want, func() error {
		last = e.do("GET", "/api/kv/tables/"+table+"/keys/"+key, "")
		if last.Status != http.StatusOK {
			return errors.New(string(last.Raw))
		}
		if got, _ := json.Marshal(last.At("value")); !bytes.Contains(got, []byte(want)) {
			return errors.New("value " + string(got))
		}
		return nil
	})
	return last
}
