package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/lincheck"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// DefaultDuration is how long faults are injected; DETBUS_FAULT_DURATION
// (a Go duration such as 10m) sets another.
const DefaultDuration = 60 * time.Second

// The workload.
const (
	linClients = 6
	linPace    = 20 * time.Millisecond // between one client's operations
	bankPace   = 25 * time.Millisecond // between bank commands
	kvPace     = 25 * time.Millisecond // between one kv writer's ops
	detCount   = 3                     // instances of the bank DET
	// resumeWithin bounds how long writes may stop after a leader is
	// killed.
	resumeWithin = 10 * time.Second
)

var linESKs = []string{"lin.a", "lin.b", "lin.c", "lin.d"}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// detbusBinary builds the detbus command once per test run.
func detbusBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "detbus-faults-bin-"); buildErr == nil {
			binPath, buildErr = BuildDetbus(binDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func faultDuration(t *testing.T) time.Duration {
	s := os.Getenv("DETBUS_FAULT_DURATION")
	if s == "" {
		return DefaultDuration
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("DETBUS_FAULT_DURATION=%q is not a positive duration", s)
	}
	return d
}

// TestFaults runs the workload on a three-node cluster of detbus
// processes while the fault schedule kills, pauses and isolates nodes,
// then heals everything and checks the log, the history, the DET and the
// kv replicas. See the package documentation for the checks.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs real processes for a minute or more")
	}
	d := faultDuration(t)
	c := StartCluster(t, detbusBinary(t), "faults", 3)
	urls := c.ClientURLs()
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Minute)
	defer cancel()

	open := func() *transport.Log {
		t.Helper()
		var l *transport.Log
		err := poll(ctx, time.Minute, "the log", func(ctx context.Context) (err error) {
			l, err = transport.Connect(ctx, urls, transport.Config{}, ClientOptions()...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	ctl := open()
	h := &history{start: time.Now()}

	// The workload, each part on connections of its own, runs on a
	// context with no deadline, like a client's; ctx bounds the waits.
	work, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var wg sync.WaitGroup
	for i := range linClients {
		l := open()
		wg.Go(func() { linClient(work, l, h, i, linESKs, linPace) })
	}
	bankLog := open()
	wg.Go(func() { bankWriter(work, bankLog, h, bankPace) })

	dets := startDETs(t, ctx, open)
	kvw := startKV(t, ctx, open)
	for _, w := range kvw.writers {
		wg.Go(func() { w.run(work, kvPace) })
	}

	in := &injector{c: c, js: ctl.JetStream(), stream: transport.DefaultStream, h: h, logf: t.Logf}
	if err := in.run(ctx, d); err != nil {
		t.Fatalf("fault schedule: %v", err)
	}
	healed := h.now()
	if err := in.waitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes must go through again before the workload stops.
	if err := poll(ctx, time.Minute, "a write after the faults", func(context.Context) error {
		for _, r := range h.records() {
			if r.succeeded() && !r.unknown && r.call > healed {
				return nil
			}
		}
		return errors.New("none yet")
	}); err != nil {
		t.Fatal(err)
	}
	stopWork()
	wg.Wait()
	end := h.now()

	// The DET catches up with every command that landed.
	decisions := dets.waitCaughtUp(t, ctx, ctl)
	dets.stop()
	kvState := kvw.converge(t, ctx, open)

	// The log as it stands.
	w, errs := walk(ctx, open())
	report(t, "log shape", errs)
	recs := h.records()
	if path := os.Getenv("DETBUS_FAULT_HISTORY"); path != "" {
		writeHistory(t, path, h.start, recs, in.faults)
	}
	acked, lost, errs := checkAcked(recs, w)
	report(t, "acknowledged writes", errs)
	resolvedAt := h.now()
	res, errs := resolve(ctx, ctl, recs, w)
	report(t, "unknown outcomes", errs)

	ops := linHistory(recs, resolvedAt)
	counts := lincheck.Count(ops)
	checkStart := time.Now()
	lin, vis := lincheck.Check(ops, 5*time.Minute, t.TempDir())
	checkTook := time.Since(checkStart)
	if lin != porcupine.Ok {
		keep, err := os.MkdirTemp("", "detbus-faults-lin-")
		if err == nil && vis != "" {
			if data, rerr := os.ReadFile(vis); rerr == nil && os.WriteFile(keep+"/linearizability.html", data, 0o644) == nil {
				vis = keep + "/linearizability.html"
			}
		}
		t.Errorf("linearizability of %d operations: %s, want %s (visualization: %s)", len(ops), lin, porcupine.Ok, vis)
	}
	if !counts.All() {
		t.Errorf("the workload did not produce every outcome: %v", counts)
	}
	nDecisions, errs := checkDET(w)
	report(t, "DET output", errs)
	if nDecisions != decisions {
		t.Errorf("%d decisions in the walk, %d when the DET caught up", nDecisions, decisions)
	}
	dets.check(t)
	kvw.check(t, w, kvState)

	nc, err := nats.Connect(urls, ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	replicaStart := time.Now()
	names := make([]string, len(c.Nodes))
	for i, node := range c.Nodes {
		names[i] = node.Name
	}
	report(t, "replicas", checkReplicas(ctx, nc, transport.DefaultStream, names, w))
	replicaTook := time.Since(replicaStart)

	// Availability: how soon writes resumed after each kill, and the
	// longest time without a successful write.
	var byKind = map[faultKind]int{}
	var slowest time.Duration
	var slowestKill fault
	for _, f := range in.faults {
		byKind[f.kind]++
		if f.kind != faultKill {
			continue
		}
		r := resumedAfter(recs, f.start)
		if r < 0 || r > resumeWithin {
			t.Errorf("writes did not resume within %v of %v: %v", resumeWithin, f, r)
		}
		if r > slowest {
			slowest, slowestKill = r, f
		}
	}
	gap, gapAt := longestGap(recs, 0, end)

	var st struct{ appends, writes, gets, unknown, failedGets int }
	for _, r := range recs {
		switch r.kind {
		case opAppend:
			st.appends++
		case opWrite:
			st.writes++
		case opGet:
			st.gets++
			if r.failed {
				st.failedGets++
			}
		}
		if r.unknown {
			st.unknown++
		}
	}
	result := "PASS"
	if t.Failed() {
		result = "FAIL"
	}
	t.Logf("history: %v; linearizability %s in %v; replicas compared in %v", counts, lin, checkTook.Round(time.Millisecond), replicaTook.Round(time.Millisecond))
	t.Logf("DET: %d decisions from %d instances (%s); kv: %s", decisions, detCount, dets.summary(), kvw.summary())
	t.Logf("SUMMARY faults %v: %d operations (%d appends, %d writes, %d gets, %d kv ops; %d acknowledged writes, %d lost; %d unknown outcomes: %d landed, %d not, %d unresolved; %d failed reads); "+
		"faults injected: %d kill, %d pause, %d partition; writes resumed at worst %v after a kill (%v); longest time without a write %v (from %v); result %s",
		d, len(recs)+kvw.ops(), st.appends, st.writes, st.gets, kvw.ops(), acked, lost, res.unknown, res.landed, res.notLanded, res.unresolved, st.failedGets,
		byKind[faultKill], byKind[faultPause], byKind[faultPartition], slowest.Round(10*time.Millisecond), slowestKill, gap.Round(10*time.Millisecond), gapAt.Round(100*time.Millisecond), result)
}

// report fails the test with up to ten of errs.
func report(t *testing.T, what string, errs []error) {
	t.Helper()
	for i, err := range errs {
		if i == 10 {
			t.Errorf("%s: %d more errors", what, len(errs)-10)
			return
		}
		t.Errorf("%s: %v", what, err)
	}
}

// dets is the instances of the bank DET.
type dets struct {
	instances []*detInstance
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func startDETs(t *testing.T, ctx context.Context, open func() *transport.Log) *dets {
	t.Helper()
	// The instances run like a worker process's: on a context with no
	// deadline, so that the log's own timeouts apply to their calls.
	rctx, cancel := context.WithCancel(context.Background())
	ds := &dets{cancel: cancel}
	t.Cleanup(ds.stop)
	for i := range detCount {
		l := open()
		var snap *transform.SnapshotStore
		if err := poll(ctx, time.Minute, "the snapshot bucket", func(ctx context.Context) (err error) {
			snap, err = transform.OpenSnapshotStore(ctx, l, transform.DefaultSnapshotBucket)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		d := &detInstance{name: fmt.Sprintf("det%d", i+1), log: l, snap: snap}
		ds.instances = append(ds.instances, d)
		ds.wg.Go(func() { d.run(rctx) })
	}
	return ds
}

func (ds *dets) stop() {
	ds.cancel()
	ds.wg.Wait()
}

// waitCaughtUp waits until every instance has applied every command in
// the log and the decisions count equals the commands count, and returns
// that count.
func (ds *dets) waitCaughtUp(t *testing.T, ctx context.Context, l *transport.Log) int {
	t.Helper()
	var n uint64
	err := poll(ctx, 60*time.Second, "the DET through every command", func(ctx context.Context) error {
		st, err := l.State(ctx, "bank.>")
		if err != nil {
			return err
		}
		var commands uint64
		for esk, c := range st.ESKs {
			if strings.HasPrefix(esk, "bank.commands.") {
				commands += c
			}
		}
		n = st.ESKs[bank.Spec().Output]
		if n != commands {
			return fmt.Errorf("%d decisions for %d commands", n, commands)
		}
		for _, d := range ds.instances {
			s, _, fatal := d.status()
			if fatal != nil {
				return fmt.Errorf("%s stopped: %w", d.name, fatal)
			}
			if s.Outputs != n {
				return fmt.Errorf("%s at %d outputs of %d", d.name, s.Outputs, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v (goroutines of the test process: %s)", err, dumpGoroutines())
	}
	return int(n)
}

// dumpGoroutines writes the stacks of every goroutine of the test process
// to a file kept after the run and returns its path.
func dumpGoroutines() string {
	f, err := os.CreateTemp("", "detbus-faults-goroutines-*.txt")
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		return err.Error()
	}
	return f.Name()
}

// check fails the test if an instance diverged or stopped for good.
func (ds *dets) check(t *testing.T) {
	t.Helper()
	for _, d := range ds.instances {
		st, _, fatal := d.status()
		if fatal != nil {
			t.Errorf("%s: %v", d.name, fatal)
		}
		if len(st.Divergences) > 0 {
			t.Errorf("%s diverged: %+v", d.name, st.Divergences)
		}
	}
}

func (ds *dets) summary() string {
	var parts []string
	for _, d := range ds.instances {
		st, restarts, _ := d.status()
		s := fmt.Sprintf("%s won %d lost %d", d.name, st.Won, st.Lost)
		if len(restarts) > 0 {
			s += fmt.Sprintf(", restarted %d times (last: %s)", len(restarts), restarts[len(restarts)-1])
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// writeHistory writes every operation and fault, one a line in time
// order, for reading a run after the fact.
func writeHistory(t *testing.T, path string, start time.Time, recs []*record, faults []fault) {
	var b strings.Builder
	fmt.Fprintf(&b, "start %s\n", start.Format(time.RFC3339Nano))
	for _, f := range faults {
		fmt.Fprintf(&b, "%12.3f fault %v, until %.3f\n", f.start.Seconds(), f, f.end.Seconds())
	}
	for _, r := range recs {
		kind := map[opKind]string{opAppend: "append", opWrite: "write", opGet: "get"}[r.kind]
		out := lincheck.Describe(lincheck.Input{Op: lincheck.Append, ESK: r.esk, Index: r.index, Payload: r.payload}, r.out)
		if r.kind == opGet {
			out = lincheck.Describe(lincheck.Input{Op: lincheck.Get, ESK: r.esk, Index: r.index}, r.out)
		}
		fmt.Fprintf(&b, "%12.3f %12.3f %s %s %s unknown=%v acked=%v landed=%v failed=%v %s %s\n",
			r.call.Seconds(), r.ret.Seconds(), r.client, r.id, kind, r.unknown, r.acked, r.landed, r.failed, out, r.err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("history: %v", err)
	}
}
