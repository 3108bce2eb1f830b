// The matching demo runs several identical instances of the matching DET
// (package matching) against one log, feeds them random orders, and
// checks that the instances agree.
//
// Each instance is a [transform.Runner] of matching.Spec() with its own
// NATS connection. There is no leader: every instance reads the orders in
// the log's total order, matches them in its own order books, and appends
// the events they cause to "matching.events" with existsOrWrite at their
// indices. The fastest instance writes each event (won); the others find
// it written and equal to their own (lost). The demo writes random limit,
// market and cancel orders on two instruments, "orders.btc-eur" and
// "orders.eth-eur", with prices in integer ticks around 100. It then reads
// the orders back from the log in order and feeds them to a fresh engine
// offline, which says how many events the instances must write; it waits
// until the log has exactly that many, and prints the counts of acks,
// trades, dones, cancels and rejects, the last few trades, and how many
// events each instance won and lost.
//
// It then checks that the replicas agree: the events in the log are byte
// for byte those of the offline engine, and every instance has computed
// them all, found no divergence and rejected no input. It prints "replicas
// agree: yes", or exits with status 1 and says what differs.
//
// Run it with an embedded node, kept in a temporary directory that is
// removed at exit:
//
//	go run ./examples/matching/demo
//	go run ./examples/matching/demo --instances 5 --orders 2000 --seed 7
//
// or against a running node (started with `go run ./cmd/detbus serve`, say):
//
//	go run ./examples/matching/demo --nats nats://127.0.0.1:4222
//
// With --nats the demo appends to the node's existing log (stream EVENTS,
// prefix "events"): order ids continue after the orders already on
// "orders.*", the instances and the offline engine replay the whole log
// from its start (the instances keep no snapshots), and the checks cover
// the whole log, while the counts cover the events written since the run
// started. Other instances of the matching DET (`detbus worker matching`)
// may run meanwhile; other writers of orders may not, since the demo
// computes the expected events from the orders it finds once its own are
// written.
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
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/examples/matching"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// instruments are the books the random orders go to, each on its ESK
// "orders.<instrument>".
var instruments = []string{"btc-eur", "eth-eur"}

// accounts place the random orders.
var accounts = []string{"a1", "a2", "a3", "a4"}

// ordersPattern matches every ESK the matching DET reads.
const ordersPattern = "orders.*"

// lastTrades is how many trades the summary shows.
const lastTrades = 5

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
		fmt.Fprintln(os.Stderr, "matching demo:", err)
		os.Exit(1)
	}
}

// usageError is a bad command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

type options struct {
	nats      string
	instances int
	orders    int
	seed      uint64
	timeout   time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("matching-demo", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.nats, "nats", "", "NATS URLs (comma-separated) of a running node; default: an embedded node in a temporary directory")
	fs.IntVar(&o.instances, "instances", 3, "instances of the matching DET to run")
	fs.IntVar(&o.orders, "orders", 300, "random orders to write")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random orders")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the events")
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
	case o.orders < 1:
		bad = fmt.Errorf("--orders %d: need at least 1", o.orders)
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

	spec := matching.Spec()
	ordersBefore, err := countAll(ctx, l, ordersPattern)
	if err != nil {
		return err
	}
	eventsBefore, err := l.Count(ctx, spec.Output)
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
	mix, err := writeOrders(ctx, l, o, ordersBefore)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d orders (%s) to orders.%s (seed %d)\n", o.orders, mix, strings.Join(instruments, ", orders."), o.seed)

	// The orders as the log holds them, in its total order, fed to a
	// fresh engine: what every instance must write.
	orders, err := readAll(ctx, l, ordersPattern)
	if err != nil {
		return err
	}
	expected, err := replay(spec, orders)
	if err != nil {
		return err
	}
	want := uint64(len(expected))
	fmt.Fprintf(stdout, "offline engine: %d events for %d orders\n", want, len(orders))

	waitCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err = waitUntil(waitCtx, f.failed, "the events of every order", func() (bool, string, error) {
		c, err := l.Count(waitCtx, spec.Output)
		if err != nil {
			return false, "", err
		}
		if c > want {
			return false, "", fmt.Errorf("%s has %d events, the offline engine makes %d", spec.Output, c, want)
		}
		return c == want, fmt.Sprintf("%d of %d events", c, want), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "all %d events written after %v\n", want, time.Since(start).Round(time.Millisecond))
	if err := f.waitOutputs(waitCtx, want); err != nil {
		return err
	}
	statuses := f.statuses()
	if err := f.stop(); err != nil {
		return err
	}

	events, err := readAll(ctx, l, spec.Output)
	if err != nil {
		return err
	}
	var problems []string
	if uint64(len(events)) != want {
		problems = append(problems, fmt.Sprintf("read back %d events, the offline engine makes %d", len(events), want))
	}
	for i := range min(len(events), len(expected)) {
		if !bytes.Equal(events[i].Data, expected[i]) {
			problems = append(problems, fmt.Sprintf("event %d in the log is %s, the offline engine makes %s", i, events[i].Data, expected[i]))
			if len(problems) >= 5 {
				problems = append(problems, "(and possibly more)")
				break
			}
		}
	}

	counts := map[string]int{}
	var trades []matching.Output
	for _, ev := range events[min(eventsBefore, uint64(len(events))):] {
		var out matching.Output
		if err := ev.Decode(&out); err != nil {
			return fmt.Errorf("event %d: %w", ev.Index, err)
		}
		counts[out.Type]++
		if out.Type == matching.TypeTrade {
			trades = append(trades, out)
		}
	}
	fmt.Fprintf(stdout, "events: %d (acks %d, trades %d, dones %d, cancels %d, rejects %d)\n",
		len(events)-int(min(eventsBefore, uint64(len(events)))), counts[matching.TypeAck], counts[matching.TypeTrade],
		counts[matching.TypeDone], counts[matching.TypeCancelled], counts[matching.TypeReject])
	if len(trades) > 0 {
		shown := trades[max(0, len(trades)-lastTrades):]
		fmt.Fprintf(stdout, "last %d trades:\n", len(shown))
		for _, t := range shown {
			fmt.Fprintf(stdout, "  %s  %3d @ %3d  buy %-6s sell %-6s maker %s\n", t.Instrument, t.Qty, t.Price, t.Buy, t.Sell, t.Maker)
		}
	}
	fmt.Fprintln(stdout, "instances:")
	for _, st := range statuses {
		fmt.Fprintf(stdout, "  %s: outputs %d, won %d, lost %d, divergences %d\n",
			st.Instance, st.Outputs, st.Won, st.Lost, len(st.Divergences))
		if st.Outputs != want {
			problems = append(problems, fmt.Sprintf("instance %s has %d outputs, the offline engine makes %d", st.Instance, st.Outputs, want))
		}
		if st.Rejections != 0 {
			problems = append(problems, fmt.Sprintf("instance %s rejected %d inputs", st.Instance, st.Rejections))
		}
		for _, d := range st.Divergences {
			problems = append(problems, fmt.Sprintf("instance %s: %v", st.Instance, &d))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("replicas disagree:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(stdout, "replicas agree: yes")
	return nil
}

// writeOrders writes o.orders random orders, numbering their ids after
// the existing orders, and describes the mix it wrote.
func writeOrders(ctx context.Context, l *transport.Log, o options, existing uint64) (string, error) {
	r := rand.New(rand.NewPCG(o.seed, 0x6d61746368)) // "match"
	// The ids of the limit orders written, by instrument, for cancels.
	placed := map[string][]string{}
	var limits, markets, cancels int
	for i := range uint64(o.orders) {
		inst := instruments[r.IntN(len(instruments))]
		id := fmt.Sprintf("o%d", existing+i+1)
		side := [2]string{"buy", "sell"}[r.IntN(2)]
		acct := accounts[r.IntN(len(accounts))]
		var ord matching.Order
		switch x := r.IntN(10); {
		case x < 2 && len(placed[inst]) > 0:
			// Possibly of an order already filled or cancelled: the
			// engine rejects it as not resting.
			ord = matching.Order{Op: matching.OpCancel, ID: placed[inst][r.IntN(len(placed[inst]))]}
			cancels++
		case x < 4:
			ord = matching.Order{Op: matching.OpMarket, ID: id, Side: side, Qty: 1 + r.Int64N(8), Account: acct}
			markets++
		default:
			// Bids from 93 to 102 ticks, asks from 98 to 107: some
			// cross, some rest.
			price := 93 + r.Int64N(10)
			if side == "sell" {
				price += 5
			}
			ord = matching.Order{Op: matching.OpLimit, ID: id, Side: side, Price: price, Qty: 1 + r.Int64N(10), Account: acct}
			placed[inst] = append(placed[inst], id)
			limits++
		}
		if _, err := l.Write(ctx, "orders."+inst, transform.JSON(ord)); err != nil {
			return "", fmt.Errorf("write order %d: %w", i, err)
		}
	}
	return fmt.Sprintf("%d limit, %d market, %d cancel", limits, markets, cancels), nil
}

// replay feeds the orders to a fresh engine in log order and returns the
// events it makes.
func replay(spec transform.Spec, orders []transport.Event) ([][]byte, error) {
	t := spec.New()
	var outs [][]byte
	for _, ev := range orders {
		in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, ContentType: ev.ContentType(), Data: ev.Data}
		o, err := t.Step(transform.NewContext(in), in)
		if err != nil {
			return nil, fmt.Errorf("offline engine: order %s#%d: %w", ev.ESK, ev.Index, err)
		}
		outs = append(outs, o...)
	}
	return outs, nil
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
	dir, err := os.MkdirTemp("", "detbus-matching-demo-")
	if err != nil {
		return nil, err
	}
	srv, err := transport.StartServer(transport.ServerConfig{Name: "matching-demo", DontListen: true, StoreDir: dir})
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
