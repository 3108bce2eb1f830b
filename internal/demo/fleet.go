package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// Node is where a demo's log lives: an embedded server, or a running
// node.
type Node struct {
	urls string            // of a running node, or ""
	srv  *transport.Server // the embedded server, or nil
	dir  string            // the embedded server's store
}

// StartNode returns the running node at urls (comma-separated), or, if
// urls is "", starts an embedded server named name that accepts only
// in-process connections, with its store in a new temporary directory.
func StartNode(urls, name string) (*Node, error) {
	if urls != "" {
		return &Node{urls: urls}, nil
	}
	dir, err := os.MkdirTemp("", "detbus-"+name+"-")
	if err != nil {
		return nil, err
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: name, DontListen: true, StoreDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Node{srv: srv, dir: dir}, nil
}

// String describes the node for the demo's report.
func (n *Node) String() string {
	if n.srv == nil {
		return n.urls + " (appending to its log)"
	}
	return "embedded, in-process, store in " + n.dir
}

// Open opens a log on a connection of its own, which closing the log
// closes.
func (n *Node) Open(ctx context.Context) (*transport.Log, error) {
	if n.srv == nil {
		return transport.Connect(ctx, n.urls, transport.Config{})
	}
	return transport.Connect(ctx, "", transport.Config{}, nats.InProcessServer(n.srv.NATS()))
}

// Stop shuts an embedded server down and removes its store; it leaves a
// running node alone.
func (n *Node) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		os.RemoveAll(n.dir)
	}
}

// Fleet is the running instances of a DET, each a [transform.Runner] on
// a connection of its own. Their warnings and errors go to standard
// error.
type Fleet struct {
	runners []*transform.Runner
	logs    []*transport.Log
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan struct{} // closed when an instance stops with an error

	mu   sync.Mutex
	errs []error

	stopOnce sync.Once
	stopErr  error
}

// StartFleet starts n instances of spec on nd, named "<spec.Name>-1" to
// "<spec.Name>-n". They run until [Fleet.Stop] or until ctx ends.
func StartFleet(ctx context.Context, nd *Node, spec transform.Spec, n int) (*Fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cancel: cancel, failed: make(chan struct{})}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range n {
		l, err := nd.Open(ctx)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.logs = append(f.logs, l)
		r, err := transform.NewRunner(transform.Config{Spec: spec, Log: l, Instance: fmt.Sprintf("%s-%d", spec.Name, i+1), Logger: logger})
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.runners = append(f.runners, r)
	}
	for _, r := range f.runners {
		f.wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				f.mu.Lock()
				if len(f.errs) == 0 {
					close(f.failed)
				}
				f.errs = append(f.errs, fmt.Errorf("instance %s: %w", r.Status().Instance, err))
				f.mu.Unlock()
			}
		})
	}
	return f, nil
}

// WaitUntil polls cond every 10ms until it holds, an instance stops with
// an error, or ctx ends; the last two are errors, which name the wait
// ("waiting for <what>") and the progress cond last reported. An error
// from cond ends the wait too, unless ctx has ended.
func (f *Fleet) WaitUntil(ctx context.Context, what string, cond func() (ok bool, progress string, err error)) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, progress, err := cond()
		switch {
		case ok:
			return nil
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		select {
		case <-tick.C:
		case <-f.failed:
			return fmt.Errorf("waiting for %s: an instance failed (%s)", what, progress)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%s)", what, context.Cause(ctx), progress)
		}
	}
}

// WaitOutputs waits until every instance has computed outputs outputs
// and settled them (written them, or compared them with those that
// landed).
func (f *Fleet) WaitOutputs(ctx context.Context, outputs uint64) error {
	return f.WaitUntil(ctx, "every instance to catch up", func() (bool, string, error) {
		behind := 0
		for _, r := range f.runners {
			if st := r.Status(); st.Outputs < outputs || st.Pending > 0 {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d of %d instances behind", behind, len(f.runners)), nil
	})
}

// Statuses returns the instances' statuses, in the order of their names.
func (f *Fleet) Statuses() []transform.Status {
	out := make([]transform.Status, len(f.runners))
	for i, r := range f.runners {
		out[i] = r.Status()
	}
	return out
}

// Finish waits until every instance has computed outputs outputs, stops
// the instances, and returns their statuses from before they stopped.
func (f *Fleet) Finish(ctx context.Context, outputs uint64) ([]transform.Status, error) {
	if err := f.WaitOutputs(ctx, outputs); err != nil {
		return nil, err
	}
	statuses := f.Statuses()
	if err := f.Stop(); err != nil {
		return nil, err
	}
	return statuses, nil
}

// Stop stops the instances, closes their logs, and returns the errors
// they stopped with. Calls after the first return the same.
func (f *Fleet) Stop() error {
	f.stopOnce.Do(func() {
		f.cancel()
		f.wg.Wait()
		for _, l := range f.logs {
			l.Close()
		}
		f.mu.Lock()
		f.stopErr = errors.Join(f.errs...)
		f.mu.Unlock()
	})
	return f.stopErr
}
