package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// runBench measures a deterministic transform with its instances as
// separate processes, beside the raw JetStream round trip, on a fresh
// embedded node per measurement.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	events := fs.Int("events", 2000, "events per latency and per throughput run")
	instances := fs.String("instances", "1,2,3", "comma-separated instance counts to measure")
	failover := fs.Bool("failover", true, "measure the output gap when the winning instance is killed (3 instances)")
	pauses := fs.Bool("pauses", true, "measure latency while instances are stopped (SIGSTOP) 50ms every 500ms: one instance, and the winner of three")
	pauseFor := fs.Duration("pause-run", 5*time.Second, "how long each pause scenario streams inputs")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	if pos[0] != "transform" {
		return usagef("bench knows only %q", "transform")
	}
	var counts []int
	for _, s := range strings.Split(*instances, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return usagef("--instances %q: want counts like 1,2,3", *instances)
		}
		counts = append(counts, n)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%-22s %9s %9s %9s %9s %12s\n", "run", "p50", "p99", "p99.9", "max", "events/s")
	raw, err := benchRaw(ctx, *events)
	if err != nil {
		return fmt.Errorf("raw baseline: %w", err)
	}
	raw.print(stdout, "raw publish->consume")
	var single float64 // one instance's throughput
	for _, n := range counts {
		r, err := benchDET(ctx, self, n, *events)
		if err != nil {
			return fmt.Errorf("%d instances: %w", n, err)
		}
		r.print(stdout, fmt.Sprintf("detbus %d instance(s)", n))
		if n == 1 {
			single = r.throughput
		}
	}
	if *pauses {
		rates := []float64{500}
		if single > 1000 {
			rates = append(rates, single/2)
		}
		for _, rate := range rates {
			fmt.Fprintf(stdout, "\npauses: inputs at %.0f/s for %v; paused instances stopped 50ms every 500ms\n", rate, *pauseFor)
			var unpaused time.Duration
			for _, sc := range []struct {
				name      string
				instances int
				pause     bool
			}{{"1 instance, unpaused", 1, false}, {"1 instance, paused", 1, true}, {"3, unpaused", 3, false}, {"3, winner paused", 3, true}} {
				r, err := benchPaused(ctx, self, sc.instances, rate, *pauseFor, sc.pause)
				if err != nil {
					return fmt.Errorf("pauses, %s: %w", sc.name, err)
				}
				p99 := r.quantile(0.99)
				if !sc.pause && sc.instances == 1 {
					unpaused = p99
				}
				r.print(stdout, sc.name)
				if sc.name != "1 instance, unpaused" && unpaused > 0 {
					fmt.Fprintf(stdout, "%-22s p99 %.2fx unpaused\n", "", float64(p99)/float64(unpaused))
				}
			}
		}
	}
	if *failover {
		gap, typical, err := benchFailover(ctx, self)
		if err != nil {
			return fmt.Errorf("failover: %w", err)
		}
		fmt.Fprintf(stdout, "failover: largest gap between outputs when the winner is SIGKILLed: %v (typical gap %v)\n", gap.Round(time.Microsecond), typical.Round(time.Microsecond))
	}
	return nil
}

type benchResult struct {
	lat        []time.Duration
	throughput float64
}

func (r benchResult) quantile(p float64) time.Duration {
	slices.Sort(r.lat)
	return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))]
}

func (r benchResult) print(w io.Writer, name string) {
	q := r.quantile
	tp := "-"
	if r.throughput > 0 {
		tp = fmt.Sprintf("%.0f", r.throughput)
	}
	fmt.Fprintf(w, "%-22s %9v %9v %9v %9v %12s\n", name, q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond),
		q(0.999).Round(time.Microsecond), r.lat[len(r.lat)-1].Round(time.Microsecond), tp)
}

// benchNode starts a fresh embedded node for one measurement and returns
// its URL.
func benchNode() (string, func(), error) {
	dir, err := os.MkdirTemp("", "detbus-bench")
	if err != nil {
		return "", nil, err
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: "bench", Host: "127.0.0.1", Port: -1, StoreDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return srv.ClientURL(), func() { srv.Shutdown(); os.RemoveAll(dir) }, nil
}

// benchRaw: publish an event to a JetStream stream and wait until an
// ordered consumer delivers it; then the same pipelined for throughput.
func benchRaw(ctx context.Context, events int) (benchResult, error) {
	url, stop, err := benchNode()
	if err != nil {
		return benchResult{}, err
	}
	defer stop()
	l, err := transport.Connect(ctx, url, transport.Config{})
	if err != nil {
		return benchResult{}, err
	}
	defer l.Close()
	return measure(ctx, l.JetStream(), "events.raw.out", events, arrivals(ctx, l, "raw.out", events*2+10))
}

// arrivals sends the time each event of esk arrives, the log followed
// from its start, on a channel with room for buffer times.
func arrivals(ctx context.Context, l *transport.Log, esk string, buffer int) chan time.Time {
	arrived := make(chan time.Time, buffer)
	go func() {
		for _, err := range l.Events(ctx, []string{esk}, transport.ReadOptions{Follow: true}) {
			if err != nil {
				return
			}
			arrived <- time.Now()
		}
	}()
	return arrived
}

func benchPayload(i int) []byte { return []byte(fmt.Sprintf(`{"i":%d,"pad":"%0100d"}`, i, 0)) }

// measure publishes events to subject and times their results' arrivals:
// the closed-loop latency phase (one event at a time, from publish to
// arrival of its result), then the pipelined throughput phase.
func measure(ctx context.Context, js jetstream.JetStream, subject string, events int, arrived <-chan time.Time) (benchResult, error) {
	var r benchResult
	wait := func() (time.Time, error) {
		select {
		case t := <-arrived:
			return t, nil
		case <-time.After(30 * time.Second):
			return time.Time{}, fmt.Errorf("no result within 30s")
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
	for i := range events {
		start := time.Now()
		if _, err := js.Publish(ctx, subject, benchPayload(i)); err != nil {
			return r, err
		}
		t, err := wait()
		if err != nil {
			return r, err
		}
		r.lat = append(r.lat, t.Sub(start))
	}
	start := time.Now()
	for i := range events {
		if _, err := js.PublishAsync(subject, benchPayload(events+i), jetstream.WithStallWait(10*time.Second)); err != nil {
			return r, err
		}
	}
	var last time.Time
	for range events {
		t, err := wait()
		if err != nil {
			return r, err
		}
		last = t
	}
	r.throughput = float64(events) / last.Sub(start).Seconds()
	return r, nil
}

type workerSet struct {
	mu    sync.Mutex
	procs map[string]*exec.Cmd
}

func (w *workerSet) start(self, url, instance string) error {
	cmd := exec.Command(self, "worker", "bench-echo", "--nats", url, "--instance", instance, "--no-snapshots", "--status-every", "50ms")
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	w.mu.Lock()
	w.procs[instance] = cmd
	w.mu.Unlock()
	return nil
}

func (w *workerSet) kill(instance string) {
	w.mu.Lock()
	cmd := w.procs[instance]
	delete(w.procs, instance)
	w.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

func (w *workerSet) stopAll() {
	w.mu.Lock()
	names := make([]string, 0, len(w.procs))
	for n := range w.procs {
		names = append(names, n)
	}
	w.mu.Unlock()
	for _, n := range names {
		w.kill(n)
	}
}

// startDET starts a node and n worker processes of the echo DET, and a
// reader of its outputs; it returns once an output has gone through.
func startDET(ctx context.Context, self string, n int) (l *transport.Log, ws *workerSet, arrived chan time.Time, stop func(), err error) {
	url, stopNode, err := benchNode()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ws = &workerSet{procs: map[string]*exec.Cmd{}}
	stop = func() { ws.stopAll(); stopNode() }
	if l, err = transport.Connect(ctx, url, transport.Config{}); err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	stop = func() { ws.stopAll(); l.Close(); stopNode() }
	for i := range n {
		if err := ws.start(self, url, fmt.Sprint("w", i)); err != nil {
			stop()
			return nil, nil, nil, nil, err
		}
	}
	arrived = arrivals(ctx, l, "bench.out", 1<<16)
	// Warm up: every instance has started consuming once one output lands
	// and the board lists them all.
	if _, err := l.Write(ctx, "bench.in", benchPayload(-1)); err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		stop()
		return nil, nil, nil, nil, fmt.Errorf("the workers produced nothing within 60s")
	}
	if err := waitInstances(ctx, l, n); err != nil {
		stop()
		return nil, nil, nil, nil, err
	}
	return l, ws, arrived, stop, nil
}

func waitInstances(ctx context.Context, l *transport.Log, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		board, ok, err := transform.BindStatusBoard(ctx, l)
		if err == nil && ok {
			list, err := board.List(ctx, l.Config().Stream)
			caught := 0
			for _, s := range list {
				if s.Inputs >= 1 && s.Stopped == "" {
					caught++
				}
			}
			if err == nil && caught >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fewer than %d instances reported within 60s", n)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func benchDET(ctx context.Context, self string, n, events int) (benchResult, error) {
	l, _, arrived, stop, err := startDET(ctx, self, n)
	if err != nil {
		return benchResult{}, err
	}
	defer stop()
	return measure(ctx, l.JetStream(), "events.bench.in", events, arrived)
}

// benchFailover streams inputs at a steady rate through three instances,
// kills the one that has won the most outputs, and reports the largest
// gap between consecutive outputs around the kill.
func benchFailover(ctx context.Context, self string) (gap, typical time.Duration, err error) {
	l, ws, arrived, stop, err := startDET(ctx, self, 3)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	const total, interval = 1500, 2 * time.Millisecond
	nc := l.Conn()
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := range total {
			<-tick.C
			if err := nc.Publish("events.bench.in", benchPayload(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nc.Flush()
	}()
	var times []time.Time
	killed := false
	for len(times) < total {
		select {
		case t := <-arrived:
			times = append(times, t)
		case err := <-done:
			if err != nil {
				return 0, 0, err
			}
			done = nil
		case <-time.After(30 * time.Second):
			return 0, 0, fmt.Errorf("outputs stopped after %d of %d", len(times), total)
		}
		if !killed && len(times) == total/2 {
			winner, err := currentWinner(ctx, l)
			if err != nil {
				return 0, 0, err
			}
			ws.kill(winner)
			killed = true
		}
	}
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	sorted := slices.Clone(gaps)
	slices.Sort(sorted)
	return sorted[len(sorted)-1], sorted[len(sorted)/2], nil
}

// benchPaused streams inputs at rate through n instances for d, and,
// with pause, stops an instance (the one that won the most outputs since
// the last pause) with SIGSTOP for 50ms every 500ms. It measures each
// input's latency from its publish to its output's arrival.
func benchPaused(ctx context.Context, self string, n int, rate float64, d time.Duration, pause bool) (benchResult, error) {
	l, ws, arrived, stop, err := startDET(ctx, self, n)
	if err != nil {
		return benchResult{}, err
	}
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := int(rate * d.Seconds())
	sent := make([]time.Time, total)
	nc := l.Conn()
	pubErr := make(chan error, 1)
	go func() {
		// Inputs on a 1ms clock, as many each tick as the rate asks.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		begin := time.Now()
		for i := 0; i < total; {
			select {
			case <-tick.C:
			case <-ctx.Done():
				pubErr <- ctx.Err()
				return
			}
			due := min(total, int(rate*time.Since(begin).Seconds())+1)
			for ; i < due; i++ {
				sent[i] = time.Now()
				if err := nc.Publish("events.bench.in", benchPayload(i)); err != nil {
					pubErr <- err
					return
				}
			}
		}
		pubErr <- nc.Flush()
	}()
	if pause {
		go pauseWinners(ctx, l, ws)
	}
	var r benchResult
	for i := range total {
		select {
		case t := <-arrived:
			if i >= total/20 { // the first twentieth warms up
				r.lat = append(r.lat, t.Sub(sent[i]))
			}
		case err := <-pubErr:
			if err != nil {
				return r, err
			}
			pubErr = nil
			i--
		case <-time.After(30 * time.Second):
			return r, fmt.Errorf("outputs stopped after %d of %d", i, total)
		}
	}
	return r, nil
}

// pauseWinners stops, every 500ms for 50ms, the instance that won the
// most outputs since the last pause, until ctx is done.
func pauseWinners(ctx context.Context, l *transport.Log, ws *workerSet) {
	board, ok, err := transform.BindStatusBoard(ctx, l)
	if err != nil || !ok {
		return
	}
	won := map[string]uint64{}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		list, err := board.List(ctx, l.Config().Stream)
		if err != nil {
			continue
		}
		best, name := uint64(0), ""
		for _, s := range list {
			if s.Stopped == "" && s.Won-won[s.Instance] >= best {
				best, name = s.Won-won[s.Instance], s.Instance
			}
			won[s.Instance] = s.Won
		}
		ws.mu.Lock()
		cmd := ws.procs[name]
		ws.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGSTOP)
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
}

// currentWinner is the instance that has won the most outputs.
func currentWinner(ctx context.Context, l *transport.Log) (string, error) {
	board, ok, err := transform.BindStatusBoard(ctx, l)
	if err != nil || !ok {
		return "", fmt.Errorf("no status board: %v", err)
	}
	list, err := board.List(ctx, l.Config().Stream)
	if err != nil {
		return "", err
	}
	best, name := uint64(0), ""
	for _, s := range list {
		if s.Stopped == "" && s.Won >= best {
			best, name = s.Won, s.Instance
		}
	}
	if name == "" {
		return "", fmt.Errorf("no running instance on the board")
	}
	return name, nil
}
