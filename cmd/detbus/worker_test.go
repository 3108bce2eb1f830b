package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// startWorker starts `detbus worker` as a process.
func startWorker(t *testing.T, url, det, instance string, extra ...string) *proc {
	t.Helper()
	return startProc(t, "worker "+instance, append([]string{"worker", det, "--nats", url, "--instance", instance}, extra...)...)
}

func writeBankCommands(t *testing.T, l *transport.Log, rng *rand.Rand, from, n int) {
	t.Helper()
	accounts := []string{"alice", "bob", "carol", "dave"}
	for i := from; i < from+n; i++ {
		a, b := accounts[rng.IntN(4)], accounts[rng.IntN(4)]
		var cmd string
		switch rng.IntN(3) {
		case 0:
			cmd = fmt.Sprintf(`{"op":"deposit","id":"c%d","account":%q,"amount":%d}`, i, a, 1+rng.IntN(100))
		case 1:
			cmd = fmt.Sprintf(`{"op":"withdraw","id":"c%d","account":%q,"amount":%d}`, i, a, 1+rng.IntN(120))
		default:
			cmd = fmt.Sprintf(`{"op":"transfer","id":"c%d","from":%q,"to":%q,"amount":%d}`, i, a, b, 1+rng.IntN(80))
		}
		if _, err := l.Write(context.Background(), fmt.Sprintf("bank.commands.%s", a), []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWorkerProcessesSurviveKills runs the bank DET as three worker
// processes, SIGKILLs instances mid-stream and restarts them, and checks
// the decisions against the DET applied offline to the same commands.
func TestWorkerProcessesSurviveKills(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		workersSurviveKills(t, testnats.Node(t).ClientURL(), 1)
	})
	t.Run("three-node cluster R3", func(t *testing.T) {
		workersSurviveKills(t, testnats.URLs(testnats.Cluster(t, 3)), 3)
	})
}

func workersSurviveKills(t *testing.T, url string, replicas int) {
	l := testnats.Log(t, url, transport.Config{Replicas: replicas})
	rng := rand.New(rand.NewPCG(5, 5))
	writeBankCommands(t, l, rng, 0, 150)
	workers := []*proc{}
	for i := range 3 {
		workers = append(workers, startWorker(t, url, "bank", fmt.Sprint("w", i), "--snapshot-every", "40"))
	}
	waitCount := func(n uint64) {
		testnats.WaitFor(t, 60*time.Second, fmt.Sprintf("%d decisions", n), func() error {
			c, err := l.Count(context.Background(), "bank.decisions")
			if err != nil || c < n {
				return fmt.Errorf("%d decisions, %v", c, err)
			}
			return nil
		})
	}
	waitCount(50)
	workers[0].kill(t)
	writeBankCommands(t, l, rng, 150, 100)
	workers = append(workers, startWorker(t, url, "bank", "w3", "--snapshot-every", "40"))
	waitCount(180)
	workers[1].kill(t)
	workers[2].kill(t) // only w3, started after a kill, is left
	writeBankCommands(t, l, rng, 250, 50)
	waitCount(300)

	// The reference: the DET applied to the commands in log order.
	spec := bank.Spec()
	ref := spec.New()
	var want []string
	for ev, err := range l.Events(context.Background(), spec.Inputs, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, Data: ev.Data}
		outs, err := ref.Step(transform.NewContext(in), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			want = append(want, string(o))
		}
	}
	var got []string
	for ev, err := range l.Events(context.Background(), []string{spec.Output}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Data))
	}
	if len(got) != len(want) {
		t.Fatalf("%d decisions, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("decision %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

// liar is a bank whose outputs differ from the honest ones.
type liar struct{ transform.Transform }

func (l liar) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	outs, err := l.Transform.Step(ctx, in)
	for i := range outs {
		outs[i] = append(outs[i][:len(outs[i]):len(outs[i])], ' ')
	}
	return outs, err
}

// TestStatusShowsDivergence: an instance that diverges publishes it, and
// `detbus status` shows the instances and the divergence.
func TestStatusShowsDivergence(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	writeBankCommands(t, l, rand.New(rand.NewPCG(1, 1)), 0, 10)
	board, err := transform.OpenStatusBoard(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	run := func(instance string, spec transform.Spec) error {
		r, err := transform.NewRunner(transform.Config{Spec: spec, Log: testnats.Log(t, url, transport.Config{}), Instance: instance, Board: board})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		testnats.WaitFor(t, 30*time.Second, instance+" through the commands", func() error {
			select {
			case err := <-done:
				done <- err
				return nil
			default:
			}
			if st := r.Status(); st.Inputs < 10 || st.Pending > 0 {
				return fmt.Errorf("%d inputs, %d outputs pending", st.Inputs, st.Pending)
			}
			return nil
		})
		cancel()
		return <-done
	}
	if err := run("honest", bank.Spec()); err != nil {
		t.Fatal(err)
	}
	bad := bank.Spec()
	honestNew := bad.New
	bad.New = func() transform.Transform { return liar{honestNew()} }
	if err := run("liar", bad); err == nil {
		t.Fatal("the lying instance did not stop on divergence")
	}
	out, err := runCLI(t, "status", "--nats", url)
	if err != nil {
		t.Fatal(err, out)
	}
	for _, want := range []string{"TRANSFORM", "honest", "liar", "DIVERGENCE transform: output divergence in bank (instance liar) at output 0", "bank/liar stopped:"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}

	// The way forward: a worker of the next generation writes the
	// decisions again, to bank.decisions.g2, from the first command.
	startWorker(t, url, "bank", "next", "--generation", "2", "--status-every", "100ms")
	want, err := l.Count(context.Background(), "bank.decisions")
	if err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, 30*time.Second, "generation 2's decisions", func() error {
		n, err := l.Count(context.Background(), "bank.decisions.g2")
		if err != nil || n < want {
			return fmt.Errorf("%d of %d, %v", n, want, err)
		}
		return nil
	})
	testnats.WaitFor(t, 30*time.Second, "both generations in status", func() error {
		out, err := runCLI(t, "status", "--nats", url)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[0] == "bank" && f[1] == "2" && f[2] == "bank.decisions.g2" && f[3] == "next" {
				return nil
			}
		}
		return fmt.Errorf("no generation 2 row:\n%s", out)
	})
}

// TestStatusShowsStaleWorker: a worker killed with SIGKILL cannot say it
// stopped; `detbus status` shows it stale once its heartbeat is three
// intervals old, with the heartbeat's age, and only for its stream.
func TestStatusShowsStaleWorker(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	writeBankCommands(t, l, rand.New(rand.NewPCG(2, 2)), 0, 5)
	w := startWorker(t, url, "bank", "doomed", "--status-every", "100ms")
	row := func(out string) string {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "doomed") {
				return line
			}
		}
		return ""
	}
	testnats.WaitFor(t, 30*time.Second, "the worker running in status", func() error {
		out, err := runCLI(t, "status", "--nats", url)
		if r := row(out); err != nil || !strings.Contains(r, "running") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	w.kill(t)
	testnats.WaitFor(t, 30*time.Second, "the killed worker stale in status", func() error {
		out, err := runCLI(t, "status", "--nats", url)
		if r := row(out); err != nil || !strings.Contains(r, "stale") || !strings.Contains(r, "s ago") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// Another stream's status does not show it.
	testnats.Log(t, url, transport.Config{Stream: "OTHER", Prefix: "other"})
	out, err := runCLI(t, "status", "--nats", url, "--stream", "OTHER", "--prefix", "other")
	if err != nil || row(out) != "" {
		t.Fatalf("status of stream OTHER (%v) shows the worker of EVENTS:\n%s", err, out)
	}
}

// TestWorkerShadow: a shadow worker beside a live one compares every
// decision, writes none, and shows its matches in detbus status.
func TestWorkerShadow(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	writeBankCommands(t, l, rand.New(rand.NewPCG(3, 3)), 0, 30)
	startWorker(t, url, "bank", "live", "--status-every", "100ms")
	startWorker(t, url, "bank", "shadow", "--shadow", "--status-every", "100ms")
	testnats.WaitFor(t, 30*time.Second, "the shadow's comparisons in status", func() error {
		n, err := l.Count(context.Background(), "bank.decisions")
		if err != nil || n == 0 {
			return fmt.Errorf("%d decisions, %v", n, err)
		}
		out, err := runCLI(t, "status", "--nats", url)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("SHADOW bank/shadow (version %s): %d outputs match, 0 differ", bank.Spec().Version, n); !strings.Contains(out, want) {
			return fmt.Errorf("status lacks %q:\n%s", want, out)
		}
		return nil
	})
	out, _ := runCLI(t, "status", "--nats", url)
	if strings.Contains(out, "FIRST MISMATCH") {
		t.Fatalf("a mismatch:\n%s", out)
	}
}

// TestBenchTransform runs the benchmark command small: it must measure the
// raw baseline, each instance count and a failover, and print them.
func TestBenchTransform(t *testing.T) {
	out, err := exec.Command(detbusBinary(t), "bench", "transform", "--events", "100", "--instances", "1,3", "--pause-run", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	for _, want := range []string{"raw publish->consume", "detbus 1 instance(s)", "detbus 3 instance(s)", "failover: largest gap",
		"pauses: inputs at 500/s", "1 instance, paused", "3, winner paused", "x unpaused"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
}
