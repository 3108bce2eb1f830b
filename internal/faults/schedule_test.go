package faults

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The fault schedule: kills of the stream leader every killEvery, a
// minority (one node) paused for pauseFor, the stream leader isolated for
// partitionFor; repeated in this order until the run's time is up.
const (
	killEvery    = 5 * time.Second
	pauseFor     = 20 * time.Second
	partitionFor = 12 * time.Second
	// recoverWithin bounds how long the cluster may take to have a stream
	// leader, or every replica current, after a fault.
	recoverWithin = 90 * time.Second
)

type faultKind string

const (
	faultKill      faultKind = "kill"
	faultPause     faultKind = "pause"
	faultPartition faultKind = "partition"
)

// cycle is the order of the faults, repeated; the long ones come first so
// that a one-minute run has every kind.
var cycle = []faultKind{faultPartition, faultPause, faultKill, faultKill, faultKill}

func (k faultKind) length() time.Duration {
	switch k {
	case faultPause:
		return pauseFor
	case faultPartition:
		return partitionFor
	}
	return killEvery
}

// fault is one fault injected, in the history's time.
type fault struct {
	kind       faultKind
	node       string
	wasLeader  bool
	start, end time.Duration
}

func (f fault) String() string {
	leader := ""
	if f.wasLeader {
		leader = " (stream leader)"
	}
	return fmt.Sprintf("%s %s%s at %v", f.kind, f.node, leader, f.start.Round(100*time.Millisecond))
}

// injector runs the fault schedule on a cluster.
type injector struct {
	c      *Cluster
	js     jetstream.JetStream // a control connection through the proxies
	stream string
	h      *history
	logf   func(format string, args ...any)
	faults []fault
}

// run injects faults until d has passed, then leaves every node running,
// resumed and connected. It returns an error if the cluster did not
// recover from a fault in time.
func (in *injector) run(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		kind := cycle[i%len(cycle)]
		if time.Until(deadline) < kind.length() {
			kind = faultKill
			if time.Until(deadline) < kind.length() {
				return nil
			}
		}
		var err error
		switch kind {
		case faultKill:
			err = in.kill(ctx)
		case faultPause:
			err = in.pause(ctx, i)
		case faultPartition:
			err = in.partition(ctx)
		}
		if err != nil {
			return err
		}
	}
}

// kill SIGKILLs the stream leader, restarts it on its data directory and
// waits until killEvery has passed since the kill.
func (in *injector) kill(ctx context.Context) error {
	leader, err := in.waitLeader(ctx)
	if err != nil {
		return err
	}
	node := in.c.Node(leader)
	start := in.h.now()
	next := time.After(killEvery)
	node.Kill()
	if err := node.Restart(); err != nil {
		return err
	}
	in.faults = append(in.faults, fault{kind: faultKill, node: leader, wasLeader: true, start: start, end: in.h.now()})
	in.logf("%v: SIGKILL %s (stream leader), restarted", start.Round(time.Millisecond), leader)
	if err := node.WaitReady(recoverWithin); err != nil {
		return err
	}
	select {
	case <-next:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// pause SIGSTOPs one node, the nodes taking turns, for pauseFor.
func (in *injector) pause(ctx context.Context, i int) error {
	if err := in.waitHealthy(ctx); err != nil {
		return err
	}
	node := in.c.Nodes[(i/len(cycle))%len(in.c.Nodes)] // the nodes take turns
	leader, _ := StreamHealth(ctx, in.js, in.stream, len(in.c.Nodes))
	f := fault{kind: faultPause, node: node.Name, wasLeader: leader == node.Name, start: in.h.now()}
	if err := node.Pause(); err != nil {
		return err
	}
	in.logf("%v: SIGSTOP %s (stream leader %s)", f.start.Round(time.Millisecond), node.Name, leader)
	wait(ctx, pauseFor)
	if err := node.Resume(); err != nil {
		return err
	}
	f.end = in.h.now()
	in.faults = append(in.faults, f)
	in.logf("%v: SIGCONT %s", f.end.Round(time.Millisecond), node.Name)
	return in.waitHealthy(ctx)
}

// partition isolates the stream leader for partitionFor.
func (in *injector) partition(ctx context.Context) error {
	if err := in.waitHealthy(ctx); err != nil {
		return err
	}
	leader, err := in.waitLeader(ctx)
	if err != nil {
		return err
	}
	f := fault{kind: faultPartition, node: leader, wasLeader: true, start: in.h.now()}
	in.c.Net.Partition(leader)
	in.logf("%v: isolate %s (stream leader)", f.start.Round(time.Millisecond), leader)
	wait(ctx, partitionFor)
	in.c.Net.Heal()
	f.end = in.h.now()
	in.faults = append(in.faults, f)
	in.logf("%v: heal", f.end.Round(time.Millisecond))
	return in.waitHealthy(ctx)
}

// wait waits for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// waitLeader waits until the stream has a leader and returns its name.
func (in *injector) waitLeader(ctx context.Context) (string, error) {
	var leader string
	err := poll(ctx, recoverWithin, "a stream leader", func(ctx context.Context) error {
		s, err := in.js.Stream(ctx, in.stream)
		if err != nil {
			return err
		}
		if ci := s.CachedInfo().Cluster; ci != nil && ci.Leader != "" {
			leader = ci.Leader
			return nil
		}
		return fmt.Errorf("no stream leader")
	})
	return leader, err
}

// waitHealthy waits until the stream has a leader and every replica is
// current.
func (in *injector) waitHealthy(ctx context.Context) error {
	return poll(ctx, recoverWithin, "every replica current", func(ctx context.Context) error {
		_, err := StreamHealth(ctx, in.js, in.stream, len(in.c.Nodes))
		return err
	})
}

// poll calls cond, each time with a 2s deadline, until it returns nil, or
// fails when timeout passes or ctx ends.
func poll(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := cond(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("waiting %v for %s: %w", timeout, what, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}
