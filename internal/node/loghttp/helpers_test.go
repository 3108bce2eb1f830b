package loghttp_test

import (
	"testing"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/loghttp"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// env is a log on a real embedded NATS node, served by the handler under
// test on a loopback httptest server, in the node's UI shell behind
// web.Protect, as `detbus serve` serves it.
type env struct {
	t    *testing.T
	nats *transport.Server
	log  *transport.Log
	url  string // the HTTP server's base URL
}

type envConfig struct {
	opts  loghttp.Options
	token string           // the token web.Protect requires ("": none)
	users []transport.User // the users web.Protect knows
}

// newEnv starts a node, opens a log on it and serves the handler.
// Everything stops at cleanup: the requests first (live streams
// included), then the log, then NATS.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t, nats: testnats.Node(t)}
	e.log = testnats.Log(t, e.nats.ClientURL(), transport.Config{})
	// The handler reads through a log of its own, as a node's does.
	served := testnats.Log(t, e.nats.ClientURL(), transport.Config{})
	h, err := loghttp.New(served, cfg.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.url = apitest.ServeNode(t, []web.Page{loghttp.Page()}, []web.API{{Prefix: loghttp.APIPrefix, Handler: h}},
		web.Access{Token: cfg.token, Users: cfg.users})
	return e
}

var ctxT = apitest.Ctx

// reply is a decoded JSON response.
type reply = apitest.Reply

// do sends a request and decodes a JSON answer. headers are "Name: value".
func (e *env) do(method, path string, headers ...string) reply {
	e.t.Helper()
	return apitest.Do(e.t, e.url, method, path, "", headers...)
}

// write appends payload to esk with opts and returns its position.
func (e *env) write(esk string, payload []byte, opts ...transport.WriteOption) transport.Position {
	e.t.Helper()
	pos, err := e.log.Write(ctxT(e.t), esk, payload, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return pos
}

// field returns the values of one field of each object of a list.
func field(items []map[string]any, name string) []any {
	out := make([]any, len(items))
	for i, it := range items {
		out[i] = it[name]
	}
	return out
}
