package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/detbus/detbus/transport"
)

// chainFlags are serve's flags for the checkpoints of the log's chain.
type chainFlags struct {
	every    uint64
	interval time.Duration
}

func (c *chainFlags) register(fs *flag.FlagSet) {
	fs.Uint64Var(&c.every, "chain-every", transport.DefaultCheckpointEvery, "checkpoint the log's hash chain on "+transport.ChainESK+" every N events (0: no checkpoints)")
	fs.DurationVar(&c.interval, "chain-interval", transport.DefaultCheckpointInterval, "and at least this often while events come")
}

// start runs the node's checkpointer until the returned function is
// called.
func (c chainFlags) start(ctx context.Context, l *transport.Log, node string) (stop func()) {
	if c.every == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := l.RunCheckpoints(ctx, transport.CheckpointConfig{Every: c.every, Interval: c.interval, By: node})
		if err != nil {
			slog.Error("chain checkpoints stopped", "stream", l.Config().Stream, "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
