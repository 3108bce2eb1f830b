package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
	"github.com/detbus/detbus/transport"
)

// nodeKV is the node's kv store, served on NATS and HTTP. At a site it is
// opened again when a site appears whose log it does not fold yet, and
// ticks the site's log every second.
type nodeKV struct {
	l    *transport.Log
	node string
	web  *nodeHTTP

	mu    sync.Mutex
	store *kv.Store
	stop  func() error // the store's NATS service

	cancel context.CancelFunc
	done   chan struct{}
}

// startNodeKV opens the node's kv store and serves it (on web too, when
// the node serves HTTP).
func startNodeKV(ctx context.Context, l *transport.Log, node string, web *nodeHTTP) (*nodeKV, error) {
	n := &nodeKV{l: l, node: node, web: web, done: make(chan struct{})}
	if err := n.open(ctx); err != nil {
		return nil, err
	}
	ctx, n.cancel = context.WithCancel(ctx)
	go n.siteLoop(ctx)
	return n, nil
}

// open opens a store, serves it, and retires the one it replaces.
func (n *nodeKV) open(ctx context.Context) error {
	store, err := openKV(ctx, n.l, n.node)
	if err != nil {
		return err
	}
	if n.l.Site() != "" {
		// A store that replaces another serves once it has caught up
		// (while the sites start, their copies may not answer yet).
		if err := retry(ctx, "catch up the kv store", store.Sync); err != nil {
			store.Close()
			return err
		}
	}
	stop, err := store.Serve()
	if err != nil {
		store.Close()
		return err
	}
	if n.web != nil {
		h, err := kvhttp.New(store, kvhttp.Options{})
		if err != nil {
			_ = stop()
			store.Close()
			return err
		}
		n.web.mount(h)
	}
	n.mu.Lock()
	old, oldStop := n.store, n.stop
	n.store, n.stop = store, stop
	n.mu.Unlock()
	if old != nil {
		_ = oldStop()
		old.Close()
	}
	return nil
}

// siteLoop ticks the site's log and opens the store again when a site
// appears that it does not fold.
func (n *nodeKV) siteLoop(ctx context.Context) {
	defer close(n.done)
	if n.l.Site() == "" {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n.mu.Lock()
		store := n.store
		n.mu.Unlock()
		if err := store.Tick(ctx); err != nil && ctx.Err() == nil {
			slog.Debug("kv: tick", "err", err)
		}
		if k%5 != 0 {
			continue
		}
		missing, err := store.MissingSites(ctx)
		if err != nil || len(missing) == 0 {
			continue
		}
		slog.Info("kv: folding the logs of new sites too", "sites", missing)
		if err := n.open(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("kv: open the store again for new sites", "err", err)
		}
	}
}

// Close stops serving and closes the store.
func (n *nodeKV) Close() {
	n.cancel()
	<-n.done
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.stop()
	n.store.Close()
}
