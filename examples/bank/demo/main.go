// The bank demo runs several identical instances of the bank DET (package
// bank) against one log, feeds them random commands, and checks that the
// instances agree.
//
// Each instance is a [transform.Runner] of bank.Spec() with its own NATS
// connection. There is no leader: every instance reads the commands in the
// log's total order, decides each one, and appends the decision to
// "bank.decisions" with existsOrWrite at its index. The fastest instance
// writes it (won); the others find it written and equal to their own
// (lost). The demo writes random deposits, withdrawals and transfers over
// five accounts to "bank.commands.<account>" (transfers go to the paying
// account's ESK), waits until every command has its decision, and prints
// how many were accepted and rejected, the final balances, and how many
// decisions each instance won and lost.
//
// It then checks that the replicas agree: every instance has as many
// outputs as there are commands and found no divergence, the decisions in
// the log are byte for byte those of a fresh bank.New() fed the same
// commands offline in log order, and the balances folded from the accepted
// decisions (their "balances" field) equal that bank's balances. It prints
// "replicas agree: yes", or exits with status 1 and says what differs.
//
// Run it with an embedded node, kept in a temporary directory that is
// removed at exit:
//
//	go run ./examples/bank/demo
//	go run ./examples/bank/demo --instances 5 --commands 1000 --seed 7
//
// or against a running node (started with `go run ./cmd/detbus serve`, say):
//
//	go run ./examples/bank/demo --nats nats://127.0.0.1:4222
//
// With --nats the demo appends to the node's existing log (stream EVENTS,
// prefix "events"): command ids continue after the commands already on
// "bank.commands.>", the instances replay the whole log from its start
// (they keep no snapshots), and the checks cover the whole log, while the
// accepted and rejected counts cover the decisions written since the run
// started. Other instances of the bank DET (`detbus worker bank`) may run
// meanwhile; other writers of bank commands may not, since the demo waits
// for as many decisions as there are commands.
//
// Usage errors exit with status 2.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// accounts are the accounts the random commands use.
var accounts = []string{"alice", "bob", "carol", "dave", "erin"}

// commandsPattern matches every ESK the bank DET reads.
const commandsPattern = "bank.commands.>"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue): // the flag set has printed it with the usage
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bank demo:", err)
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

type options struct {
	nats      string
	instances int
	commands  int
	seed      uint64
	timeout   time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bank-demo", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.nats, "nats", "", "NATS URLs (comma-separated) of a running node; default: an embedded node in a temporary directory")
	fs.IntVar(&o.instances, "instances", 3, "instances of the bank DET to run")
	fs.IntVar(&o.commands, "commands", 200, "random commands to write")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random commands")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the decisions")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.instances < 1:
		bad = fmt.Errorf("--instances %d: need at least 1", o.instances)
	case o.commands < 1:
		bad = fmt.Errorf("--commands %d: need at least 1", o.commands)
	case o.timeout <= 0:
		bad = fmt.Errorf("--timeout %v: must be positive", o.timeout)
	}
	if bad != nil {
		fmt.Fprintln(fs.Output(), bad)
		fs.Usage()
		return o, usageError{bad}
	}
	return o, nil
}

// run runs the demo; it returns a [usageError] for a bad command line.
func run(ctx context.Context, args []string, stdout io.Writer) (err error) {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	n, err := startNode(o.nats)
	if err != nil {
		return err
	}
	defer n.stop()
	l, err := n.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(stdout, "node: %s\n", n)

	spec := bank.Spec()
	commandsBefore, err := countAll(ctx, l, commandsPattern)
	if err != nil {
		return err
	}
	decisionsBefore, err := l.Count(ctx, spec.Output)
	if err != nil {
		return err
	}

	f, err := startFleet(ctx, n, spec, o.instances)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := f.stop(); err == nil {
			err = stopErr
		}
	}()
	fmt.Fprintf(stdout, "instances: %d of %s, racing to write %s\n", o.instances, spec.Name, spec.Output)

	start := time.Now()
	if err := writeCommands(ctx, l, o, commandsBefore); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d commands over %d accounts to bank.commands.<account> (seed %d)\n", o.commands, len(accounts), o.seed)

	total, err := countAll(ctx, l, commandsPattern)
	if err != nil {
		return err
	}
	waitCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err = waitUntil(waitCtx, f.failed, "every command to have its decision", func() (bool, string, error) {
		c, err := l.Count(waitCtx, spec.Output)
		if err != nil {
			return false, "", err
		}
		if c > total {
			return false, "", fmt.Errorf("%s has %d decisions for %d commands", spec.Output, c, total)
		}
		return c == total, fmt.Sprintf("%d of %d decisions", c, total), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "all %d commands decided after %v\n", total, time.Since(start).Round(time.Millisecond))
	if err := f.waitOutputs(waitCtx, total); err != nil {
		return err
	}
	statuses := f.statuses()
	if err := f.stop(); err != nil {
		return err
	}

	commands, err := readAll(ctx, l, commandsPattern)
	if err != nil {
		return err
	}
	decisions, err := readAll(ctx, l, spec.Output)
	if err != nil {
		return err
	}
	var problems []string
	offline, mismatch, err := replay(commands, decisions)
	if err != nil {
		return err
	}
	problems = append(problems, mismatch...)
	folded, err := foldBalances(decisions)
	if err != nil {
		return err
	}
	if !maps.Equal(folded, offline) {
		problems = append(problems, fmt.Sprintf("balances folded from the decisions %v differ from the offline bank's %v", folded, offline))
	}

	accepted, rejected := 0, 0
	for _, ev := range decisions[min(decisionsBefore, uint64(len(decisions))):] {
		var d bank.Decision
		if err := ev.Decode(&d); err != nil {
			return fmt.Errorf("decision %d: %w", ev.Index, err)
		}
		if d.Decision == bank.Accepted {
			accepted++
		} else {
			rejected++
		}
	}
	fmt.Fprintf(stdout, "decisions: %d (accepted %d, rejected %d)\n", accepted+rejected, accepted, rejected)
	fmt.Fprintln(stdout, "final balances:")
	for _, name := range slices.Sorted(maps.Keys(folded)) {
		fmt.Fprintf(stdout, "  %-8s %8d\n", name, folded[name])
	}
	fmt.Fprintln(stdout, "instances:")
	for _, st := range statuses {
		fmt.Fprintf(stdout, "  %s: outputs %d, won %d, lost %d, divergences %d\n",
			st.Instance, st.Outputs, st.Won, st.Lost, len(st.Divergences))
		if st.Outputs != total {
			problems = append(problems, fmt.Sprintf("instance %s has %d outputs for %d commands", st.Instance, st.Outputs, total))
		}
		for _, d := range st.Divergences {
			problems = append(problems, fmt.Sprintf("instance %s: %v", st.Instance, &d))
		}
	}
	if uint64(len(commands)) != total || uint64(len(decisions)) != total {
		problems = append(problems, fmt.Sprintf("read back %d commands and %d decisions, want %d of each", len(commands), len(decisions), total))
	}
	if len(problems) > 0 {
		return fmt.Errorf("replicas disagree:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(stdout, "replicas agree: yes")
	return nil
}

// writeCommands writes o.commands random commands, numbering their ids
// after the first existing commands.
func writeCommands(ctx context.Context, l *transport.Log, o options, existing uint64) error {
	r := rand.New(rand.NewPCG(o.seed, 0x62616e6b)) // "bank"
	for i := range uint64(o.commands) {
		c := bank.Command{ID: fmt.Sprintf("c%d", existing+i+1)}
		pick := func() string { return accounts[r.IntN(len(accounts))] }
		switch x := r.IntN(10); {
		case x < 4:
			c.Op, c.Account, c.Amount = bank.OpDeposit, pick(), 1+r.Int64N(100)
		case x < 7:
			c.Op, c.Account, c.Amount = bank.OpWithdraw, pick(), 1+r.Int64N(150)
		default: // "to" may equal "from": the bank rejects a transfer to self
			c.Op, c.From, c.To, c.Amount = bank.OpTransfer, pick(), pick(), 1+r.Int64N(120)
		}
		esk := "bank.commands." + c.Account + c.From
		if _, err := l.Write(ctx, esk, transform.JSON(c)); err != nil {
			return fmt.Errorf("write command %s: %w", c.ID, err)
		}
	}
	return nil
}

// replay feeds the commands to a fresh bank in log order, compares its
// decisions with the ones in the log, and returns its final balances and
// the differences found.
func replay(commands, decisions []transport.Event) (map[string]int64, []string, error) {
	b := bank.New()
	var problems []string
	for i, ev := range commands {
		in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, ContentType: ev.ContentType(), Data: ev.Data}
		outs, err := b.Step(transform.NewContext(in), in)
		if err != nil {
			return nil, nil, fmt.Errorf("offline bank: command %s#%d: %w", ev.ESK, ev.Index, err)
		}
		if len(outs) != 1 {
			return nil, nil, fmt.Errorf("offline bank: command %s#%d: %d decisions, want 1", ev.ESK, ev.Index, len(outs))
		}
		switch {
		case i >= len(decisions):
			problems = append(problems, fmt.Sprintf("command %s#%d has no decision in the log", ev.ESK, ev.Index))
		case !bytes.Equal(outs[0], decisions[i].Data):
			problems = append(problems, fmt.Sprintf("decision %d in the log is %s, the offline bank decides %s", i, decisions[i].Data, outs[0]))
		}
		if len(problems) >= 5 {
			problems = append(problems, "(and possibly more)")
			break
		}
	}
	return b.Balances(), problems, nil
}

// foldBalances applies the balances reported by the accepted decisions.
func foldBalances(decisions []transport.Event) (map[string]int64, error) {
	balances := map[string]int64{}
	for _, ev := range decisions {
		var d bank.Decision
		if err := ev.Decode(&d); err != nil {
			return nil, fmt.Errorf("decision %d: %w", ev.Index, err)
		}
		if d.Decision == bank.Accepted {
			maps.Copy(balances, d.Balances)
		}
	}
	return balances, nil
}

// countAll sums the counts of the ESKs matching pattern.
func countAll(ctx context.Context, l *transport.Log, pattern string) (uint64, error) {
	counts, err := l.Counts(ctx, pattern)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n, nil
}

// readAll reads the events matching pattern in log order, up to the head.
func readAll(ctx context.Context, l *transport.Log, pattern string) ([]transport.Event, error) {
	var out []transport.Event
	for ev, err := range l.Events(ctx, []string{pattern}, transport.ReadOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", pattern, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// waitUntil polls cond until it holds, an instance fails, or ctx ends.
func waitUntil(ctx context.Context, failed <-chan struct{}, what string, cond func() (bool, string, error)) error {
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
		case <-failed:
			return fmt.Errorf("waiting for %s: an instance failed (%s)", what, progress)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%s)", what, context.Cause(ctx), progress)
		}
	}
}

// node is where the log lives: an embedded server or a running one.
type node struct {
	urls string            // of a running node, or ""
	srv  *transport.Server // the embedded server, or nil
	dir  string            // the embedded server's store
}

func startNode(urls string) (*node, error) {
	if urls != "" {
		return &node{urls: urls}, nil
	}
	dir, err := os.MkdirTemp("", "detbus-bank-demo-")
	if err != nil {
		return nil, err
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: "bank-demo", DontListen: true, StoreDir: dir})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &node{srv: srv, dir: dir}, nil
}

func (n *node) String() string {
	if n.srv == nil {
		return n.urls + " (appending to its log)"
	}
	return "embedded, in-process, store in " + n.dir
}

// open opens a log on a connection of its own, which closing the log
// closes.
func (n *node) open(ctx context.Context) (*transport.Log, error) {
	if n.srv == nil {
		return transport.Connect(ctx, n.urls, transport.Config{})
	}
	return transport.Connect(ctx, "", transport.Config{}, nats.InProcessServer(n.srv.NATS()))
}

func (n *node) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		os.RemoveAll(n.dir)
	}
}

// fleet is the running instances of a DET.
type fleet struct {
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

// startFleet starts n instances of spec, each on a connection of its own.
func startFleet(ctx context.Context, nd *node, spec transform.Spec, n int) (*fleet, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &fleet{cancel: cancel, failed: make(chan struct{})}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := range n {
		l, err := nd.open(ctx)
		if err != nil {
			f.stop()
			return nil, err
		}
		f.logs = append(f.logs, l)
		r, err := transform.NewRunner(transform.Config{Spec: spec, Log: l, Instance: fmt.Sprintf("%s-%d", spec.Name, i+1), Logger: logger})
		if err != nil {
			f.stop()
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

// waitOutputs waits until every instance has computed outputs outputs.
func (f *fleet) waitOutputs(ctx context.Context, outputs uint64) error {
	return waitUntil(ctx, f.failed, "every instance to catch up", func() (bool, string, error) {
		behind := 0
		for _, r := range f.runners {
			if r.Status().Outputs < outputs {
				behind++
			}
		}
		return behind == 0, fmt.Sprintf("%d of %d instances behind", behind, len(f.runners)), nil
	})
}

func (f *fleet) statuses() []transform.Status {
	out := make([]transform.Status, len(f.runners))
	for i, r := range f.runners {
		out[i] = r.Status()
	}
	return out
}

// stop stops the instances, closes their logs, and returns the errors
// they stopped with. Calls after the first return the same.
func (f *fleet) stop() error {
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
