package board_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// env is a node with a board of its stream, served by the handler under
// test, and DET instances racing on it, each on its own connection.
type env struct {
	t   *testing.T
	url string         // the NATS node's client URL
	log *transport.Log // the board's log, and the test's writes
	b   *board.Board
	api string // the HTTP server's base URL
}

// statusEvery is how often the instances of the tests publish their
// status, so that the board sees updates quickly.
const statusEvery = 20 * time.Millisecond

// newEnv starts a node, provisions the DETs' buckets as a node does,
// polls a board and serves h(board's handler) on loopback. Everything stops
// at cleanup.
func newEnv(t *testing.T, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	s := testnats.Node(t)
	e := &env{t: t, url: s.ClientURL()}
	e.log = testnats.Log(t, e.url, transport.Config{})
	if _, err := transform.OpenStatusBoard(ctxT(t), e.log); err != nil {
		t.Fatal(err)
	}
	if _, err := transform.OpenSnapshotStore(ctxT(t), e.log, ""); err != nil {
		t.Fatal(err)
	}
	b, err := board.New(e.log, board.Options{Poll: statusEvery})
	if err != nil {
		t.Fatal(err)
	}
	e.b = b
	t.Cleanup(b.Start(context.Background()))
	h := b.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	e.api = apitest.Serve(t, h)
	return e
}

var ctxT = apitest.Ctx

// asNode returns a wrapper that serves the board's API as a node does:
// in the shell of package web with the transforms page, behind the
// access rule a.
func asNode(t *testing.T, a web.Access) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		t.Helper()
		ui, err := web.New([]web.Page{board.Page()}, []web.API{{Prefix: board.APIPrefix, Handler: h}})
		if err != nil {
			t.Fatal(err)
		}
		protected, err := web.Protect(ui, a)
		if err != nil {
			t.Fatal(err)
		}
		return protected
	}
}

// instance is a DET instance running until cleanup, or halt.
type instance struct {
	r    *transform.Runner
	stop context.CancelFunc
	done chan error
}

// run starts an instance of spec named name, on a connection of its own,
// publishing its status every statusEvery and snapshotting every 5
// inputs (never with cfg.SnapshotEvery -1); cfg's other fields are kept.
func (e *env) run(name string, spec transform.Spec, cfg transform.Config) *instance {
	e.t.Helper()
	l := testnats.Log(e.t, e.url, transport.Config{})
	sb, err := transform.OpenStatusBoard(ctxT(e.t), l)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.Spec, cfg.Log, cfg.Instance, cfg.Board, cfg.StatusInterval = spec, l, name, sb, statusEvery
	switch {
	case cfg.SnapshotEvery < 0:
		cfg.SnapshotEvery = 0 // no snapshots: it replays from the first input
	case cfg.Snapshots == nil:
		if cfg.Snapshots, err = transform.OpenSnapshotStore(ctxT(e.t), l, ""); err != nil {
			e.t.Fatal(err)
		}
		cfg.SnapshotEvery, cfg.SnapshotInterval = 5, time.Hour
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	r, err := transform.NewRunner(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{r: r, stop: cancel, done: make(chan error, 1)}
	go func() { in.done <- r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-in.done })
	return in
}

// move writes a stock movement, an input of the tally, and returns its
// position.
func (e *env) move(warehouse, item string, qty int) transport.Position {
	e.t.Helper()
	pos, err := e.log.Write(ctxT(e.t), "tally.moves."+warehouse, fmt.Appendf(nil, `{"item":%q,"qty":%d}`, item, qty))
	if err != nil {
		e.t.Fatal(err)
	}
	return pos
}

// get sends a GET to the API.
func (e *env) get(path string, headers ...string) apitest.Reply {
	e.t.Helper()
	return apitest.Do(e.t, e.api, "GET", path, "", headers...)
}

// waitDET polls GET /api/transforms/dets/{id}, with headers, until cond
// accepts the DET, and returns it.
func (e *env) waitDET(id, what string, cond func(board.DET) error, headers ...string) board.DET {
	e.t.Helper()
	var d board.DET
	testnats.WaitFor(e.t, 30*time.Second, id+": "+what, func() error {
		r := e.get("/api/transforms/dets/"+id, headers...)
		if r.Status != http.StatusOK {
			return fmt.Errorf("status %d: %s", r.Status, r.Raw)
		}
		d = board.DET{}
		if err := json.Unmarshal(r.Raw, &d); err != nil {
			e.t.Fatalf("decode %s: %v", r.Raw, err)
		}
		return cond(d)
	})
	return d
}

// instanceOf returns the instance of d named name.
func instanceOf(d board.DET, name string) (board.Instance, bool) {
	for _, in := range d.Instances {
		if in.Instance == name {
			return in, true
		}
	}
	return board.Instance{}, false
}

// noisySpec is the tally with a random number in every output: not
// deterministic, so that it diverges from any other instance.
func noisySpec() transform.Spec {
	s := tally.Spec()
	s.New = func() transform.Transform { return noisy{tally.New()} }
	return s
}

type noisy struct{ *tally.Tally }

func (n noisy) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	outs, err := n.Tally.Step(ctx, in)
	for i, o := range outs {
		var m map[string]any
		if json.Unmarshal(o, &m) == nil {
			m["noise"] = rand.Int64() // the wall of determinism a DET must not cross
			outs[i] = transform.JSON(m)
		}
	}
	return outs, err
}
