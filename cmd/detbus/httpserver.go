package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/detbus/detbus/internal/cli"
	"github.com/detbus/detbus/internal/node/loghttp"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/telemetry"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/tasks/taskshttp"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// nodeHTTP is a node's HTTP server: /healthz for anyone, and behind the
// access rule of web.Protect, /metrics and the UI's pages with their
// APIs (kv, tasks, transforms and the log), which answer 503 until
// mounted.
type nodeHTTP struct {
	addr  string // the address it listens on
	token bool   // whether requests need the token
	kv    mounted
	tasks mounted
	sites mounted
	dets  mounted // the transforms board
	log   mounted
}

// serveNodeHTTP serves a node's HTTP endpoints on addr until ctx is done.
// Without a token it refuses, with a usage error, to listen anywhere but
// on loopback.
func serveNodeHTTP(ctx context.Context, addr, token string, users []transport.User, tel *telemetry.Telemetry) (*nodeHTTP, error) {
	if err := web.ValidateToken(token); err != nil {
		return nil, usagef("--http-token: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listener on %s: %w", addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); token == "" && len(users) == 0 && (!ok || !ta.IP.IsLoopback()) {
		ln.Close()
		return nil, usagef("--http %s listens beyond loopback (%s): the kv API would let anyone who reaches it write to the log; "+
			"set --http-token (or $DETBUS_HTTP_TOKEN) to a secret of at least %d characters, or listen on 127.0.0.1",
			addr, ln.Addr(), web.MinTokenLength)
	}
	n := &nodeHTTP{addr: ln.Addr().String(), token: token != "" || len(users) > 0}
	n.kv.what, n.tasks.what = "the kv store", "the tasks client"
	n.sites.what = "the site (this node runs without --site)"
	n.dets.what = "the transforms board"
	n.log.what = "the log"
	ui, err := web.New([]web.Page{kvhttp.Page(), taskshttp.Page(), board.Page(), loghttp.Page()}, []web.API{
		{Prefix: kvhttp.APIPrefix, Handler: &n.kv},
		{Prefix: taskshttp.APIPrefix, Handler: &n.tasks},
		{Prefix: "/api/sites/", Handler: &n.sites},
		{Prefix: board.APIPrefix, Handler: &n.dets},
		{Prefix: loghttp.APIPrefix, Handler: &n.log},
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	inner := http.NewServeMux()
	inner.Handle("GET /metrics", tel.Handler())
	inner.Handle("/", ui)
	protected, err := web.Protect(inner, web.Access{Token: token, Users: users})
	if err != nil {
		ln.Close()
		return nil, usagef("--http-token: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("/", protected)
	startHTTP(ctx, ln, mux)
	return n, nil
}

func healthz(w http.ResponseWriter, r *http.Request) { cli.Healthz(w, r) }

// startHTTP serves h on ln until ctx is done (see cli.StartHTTP).
func startHTTP(ctx context.Context, ln net.Listener, h http.Handler) { cli.StartHTTP(ctx, ln, h) }

// mount serves h (the kv API) under /api/kv/ from now on.
func (n *nodeHTTP) mount(h http.Handler) { n.kv.h.Store(&h) }

// mountTasks serves h (the tasks API) under /api/tasks/ from now on.
func (n *nodeHTTP) mountTasks(h http.Handler) { n.tasks.h.Store(&h) }

// mountTransforms serves h (the transforms board's API) under
// /api/transforms/ from now on.
func (n *nodeHTTP) mountTransforms(h http.Handler) { n.dets.h.Store(&h) }

// mountLog serves h (the log's API) under /api/log/ from now on.
func (n *nodeHTTP) mountLog(h http.Handler) { n.log.h.Store(&h) }

// mountSites serves h (the site's report) under /api/sites from now on.
func (n *nodeHTTP) mountSites(h http.Handler) { n.sites.h.Store(&h) }

// mounted serves a handler mounted once the node has opened what it
// serves, and 503 before.
type mounted struct {
	what string
	h    atomic.Pointer[http.Handler]
}

func (m *mounted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := m.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "{\"error\":\"%s is not open yet: the node is starting\"}\n", m.what)
}
