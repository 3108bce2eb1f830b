// Package demo holds what the runnable demos of the example DETs share:
// their command line and exit statuses; the node they run against, an
// embedded one in a temporary directory or a running one named by
// --nats; the racing instances of the DET, each a [transform.Runner] on a
// NATS connection of its own; waiting for the log and the instances to
// settle and stopping everything; the lines of the report every demo
// prints; and helpers for the demos' tests.
//
// A demo describes itself with a [Program] and keeps only what is its
// own: writing the random inputs, working out how many outputs they
// must cause, and checking that the replicas agree.
//
//	var program = demo.Program{Spec: bank.Spec(), InputNoun: "commands", DefaultInputs: 200, OutputNoun: "decisions"}
//
//	func main() { program.Main(run) }
//
//	func run(ctx context.Context, args []string, stdout io.Writer) error {
//		return program.Run(ctx, args, stdout, runBank)
//	}
//
//	func runBank(ctx context.Context, s *demo.Setup, stdout io.Writer) error {
//		// Write the inputs to s.Log, then s.Settle, check what it
//		// returns, demo.ReportInstances and demo.Verdict.
//	}
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
)

// RunFunc runs a demo with the command-line arguments args (without the
// program name), writing its report to stdout. It returns a [UsageError]
// for a bad command line and [flag.ErrHelp] after printing the help.
type RunFunc func(ctx context.Context, args []string, stdout io.Writer) error

// UsageError is a bad command line. The flag set has printed it, with
// the usage, to standard error.
type UsageError struct{ error }

// Unwrap returns the error that made the command line bad.
func (e UsageError) Unwrap() error { return e.error }

// Program describes a demo program: the DET it runs, and the words its
// help uses for the DET's inputs and outputs.
type Program struct {
	// Spec is the DET the instances run. Its inputs are the ESKs the
	// demo writes its random inputs to.
	Spec transform.Spec
	// InputNoun names the random inputs the demo writes ("commands"). It
	// is also the name of the flag that says how many to write.
	InputNoun string
	// DefaultInputs is how many inputs to write by default.
	DefaultInputs int
	// OutputNoun names the outputs the demo waits for ("decisions").
	OutputNoun string
}

// Name is the program's name, the DET's followed by "-demo"
// ("bank-demo"). It names the flag set, the embedded server and the
// temporary directory of the server's store ("detbus-bank-demo-…").
func (p Program) Name() string { return p.Spec.Name + "-demo" }

// Options are a demo's parsed command line.
type Options struct {
	NATS      string        // --nats: URLs of a running node, or "" for an embedded one
	Instances int           // --instances: instances of the DET to run
	Inputs    int           // --<InputNoun>: random inputs to write
	Seed      uint64        // --seed: seed of the random inputs
	Timeout   time.Duration // --timeout: how long to wait for the outputs
}

// Main runs run with the process's arguments and a context that an
// interrupt or SIGTERM cancels, and exits: with status 2 after a
// [UsageError], with status 1 after any other error, which it prints to
// standard error after the program's name with spaces for hyphens
// ("bank demo: …"), and with status 0 otherwise (also after --help).
func (p Program) Main(run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	var ue UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue): // the flag set has printed it with the usage
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", strings.ReplaceAll(p.Name(), "-", " "), err)
		os.Exit(1)
	}
}

// Parse parses a demo's command line: --nats, --instances, --seed,
// --timeout, and the count of inputs named after p.InputNoun. Problems
// are printed to standard error with the usage and returned as a
// [UsageError]; --help returns [flag.ErrHelp].
func (p Program) Parse(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet(p.Name(), flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.NATS, "nats", "", "NATS URLs (comma-separated) of a running node; default: an embedded node in a temporary directory")
	fs.IntVar(&o.Instances, "instances", 3, "instances of the "+p.Spec.Name+" DET to run")
	fs.IntVar(&o.Inputs, p.InputNoun, p.DefaultInputs, "random "+p.InputNoun+" to write")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the random "+p.InputNoun)
	fs.DurationVar(&o.Timeout, "timeout", time.Minute, "how long to wait for the "+p.OutputNoun)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, UsageError{err}
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.Instances < 1:
		bad = fmt.Errorf("--instances %d: need at least 1", o.Instances)
	case o.Inputs < 1:
		bad = fmt.Errorf("--%s %d: need at least 1", p.InputNoun, o.Inputs)
	case o.Timeout <= 0:
		bad = fmt.Errorf("--timeout %v: must be positive", o.Timeout)
	}
	if bad != nil {
		fmt.Fprintln(fs.Output(), bad)
		fs.Usage()
		return o, UsageError{bad}
	}
	return o, nil
}

// Run is a demo's [RunFunc] around body: it parses args, starts the
// node and the instances (see [Program.Start]), runs body with the
// [Setup] and stdout, and closes the Setup. If body returns no error,
// Run returns the errors the instances stopped with, if any.
func (p Program) Run(ctx context.Context, args []string, stdout io.Writer, body func(context.Context, *Setup, io.Writer) error) (err error) {
	o, err := p.Parse(args)
	if err != nil {
		return err
	}
	s, err := p.Start(ctx, o, stdout)
	if err != nil {
		return err
	}
	defer func() {
		if closeErr := s.Close(); err == nil {
			err = closeErr
		}
	}()
	return body(ctx, s, stdout)
}

// Setup is what a demo runs against: its node, a log of its own on the
// node, and the running instances of the DET.
type Setup struct {
	Program Program        // the demo
	Options Options        // its command line
	Node    *Node          // where the log lives
	Log     *transport.Log // for the demo's own writes and reads
	Fleet   *Fleet         // the instances of Program.Spec
	// InputsBefore and OutputsBefore count the events on the DET's
	// inputs and on its output before the instances started: non-zero
	// only with --nats, on a log that has been used before.
	InputsBefore, OutputsBefore uint64

	out     io.Writer // where Start and Settle report
	started time.Time // when Start returned
}

// Start starts the node o asks for and opens Log on it, counts the
// events already on the DET's inputs and output, and starts o.Instances
// instances of the DET. It reports the node ("node: …") and the
// instances ("instances: …") to stdout, where [Setup.Settle] reports
// too. If it fails, it stops what it started.
func (p Program) Start(ctx context.Context, o Options, stdout io.Writer) (_ *Setup, err error) {
	s := &Setup{Program: p, Options: o, out: stdout}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Node, err = StartNode(o.NATS, p.Name()); err != nil {
		return nil, err
	}
	if s.Log, err = s.Node.Open(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "node: %s\n", s.Node)
	if s.InputsBefore, err = s.CountInputs(ctx); err != nil {
		return nil, err
	}
	if s.OutputsBefore, err = s.Log.Count(ctx, p.Spec.Output); err != nil {
		return nil, err
	}
	if s.Fleet, err = StartFleet(ctx, s.Node, p.Spec, o.Instances); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "instances: %d of %s, racing to write %s\n", o.Instances, p.Spec.Name, p.Spec.Output)
	s.started = time.Now()
	return s, nil
}

// Close stops the instances, closes Log and stops the node, whichever of
// them have started. It returns the errors the instances stopped with.
func (s *Setup) Close() error {
	var err error
	if s.Fleet != nil {
		err = s.Fleet.Stop()
	}
	if s.Log != nil {
		s.Log.Close()
	}
	if s.Node != nil {
		s.Node.Stop()
	}
	return err
}

// Settle waits until the instances have written the outputs of the
// demo's inputs, stops them, and reads the outputs back. It returns the
// instances' statuses from before they stopped, and the events on the
// DET's output.
//
// It waits, for at most the --timeout in all, first until the output
// holds want events, then until every instance has computed want
// outputs. Between the two it reports "all <want> <done> after
// <elapsed>" ("all 200 commands decided after 94ms"), elapsed being
// the time since [Program.Start] returned. The first wait is named what
// in errors ("waiting for every command to have its decision"); the
// output holding have > want events ends it with the error tooMany
// returns. An instance failing ends either wait.
func (s *Setup) Settle(ctx context.Context, want uint64, what, done string, tooMany func(have uint64) error) ([]transform.Status, []transport.Event, error) {
	waitCtx, cancel := context.WithTimeout(ctx, s.Options.Timeout)
	defer cancel()
	err := s.Fleet.WaitUntil(waitCtx, what, func() (bool, string, error) {
		c, err := s.Log.Count(waitCtx, s.Program.Spec.Output)
		if err != nil {
			return false, "", err
		}
		if c > want {
			return false, "", tooMany(c)
		}
		return c == want, fmt.Sprintf("%d of %d %s", c, want, s.Program.OutputNoun), nil
	})
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(s.out, "all %d %s after %v\n", want, done, time.Since(s.started).Round(time.Millisecond))
	statuses, err := s.Fleet.Finish(waitCtx, want)
	if err != nil {
		return nil, nil, err
	}
	outputs, err := s.ReadOutputs(ctx)
	if err != nil {
		return nil, nil, err
	}
	return statuses, outputs, nil
}

// CountInputs counts the events on the DET's inputs.
func (s *Setup) CountInputs(ctx context.Context) (uint64, error) {
	return CountAll(ctx, s.Log, s.Program.Spec.Inputs...)
}

// ReadInputs reads the events on the DET's inputs, in log order, up to
// the head.
func (s *Setup) ReadInputs(ctx context.Context) ([]transport.Event, error) {
	return ReadAll(ctx, s.Log, s.Program.Spec.Inputs...)
}

// ReadOutputs reads the events on the DET's output, in log order, up to
// the head.
func (s *Setup) ReadOutputs(ctx context.Context) ([]transport.Event, error) {
	return ReadAll(ctx, s.Log, s.Program.Spec.Output)
}

// ReportInstances writes a line for each instance to w, under
// "instances:", with its outputs, the outputs it won and lost, and its
// divergences. It returns the problems found: for each instance, those
// check returns (check may be nil), then one for each divergence.
func ReportInstances(w io.Writer, statuses []transform.Status, check func(transform.Status) []string) []string {
	var problems []string
	fmt.Fprintln(w, "instances:")
	for _, st := range statuses {
		fmt.Fprintf(w, "  %s: outputs %d, won %d, lost %d, divergences %d\n",
			st.Instance, st.Outputs, st.Won, st.Lost, len(st.Divergences))
		if check != nil {
			problems = append(problems, check(st)...)
		}
		for _, d := range st.Divergences {
			problems = append(problems, fmt.Sprintf("instance %s: %v", st.Instance, &d))
		}
	}
	return problems
}

// Verdict returns an error that lists the problems, or, if there are
// none, writes "replicas agree: yes" to w and returns nil.
func Verdict(w io.Writer, problems []string) error {
	if len(problems) > 0 {
		return fmt.Errorf("replicas disagree:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(w, "replicas agree: yes")
	return nil
}

// CountAll sums the counts of the ESKs matching the patterns, which must
// not overlap.
func CountAll(ctx context.Context, l *transport.Log, patterns ...string) (uint64, error) {
	var n uint64
	for _, p := range patterns {
		counts, err := l.Counts(ctx, p)
		if err != nil {
			return 0, err
		}
		for _, c := range counts {
			n += c
		}
	}
	return n, nil
}

// ReadAll reads the events matching the patterns in log order, up to the
// head.
func ReadAll(ctx context.Context, l *transport.Log, patterns ...string) ([]transport.Event, error) {
	var out []transport.Event
	for ev, err := range l.Events(ctx, patterns, transport.ReadOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", strings.Join(patterns, ", "), err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// InputOf is the input a DET sees for ev, for feeding events read from
// the log to a DET offline.
func InputOf(ev transport.Event) transform.Input {
	return transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, ContentType: ev.ContentType(), Data: ev.Data}
}

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

// WaitOutputs waits until every instance has computed outputs outputs.
func (f *Fleet) WaitOutputs(ctx context.Context, outputs uint64) error {
	return f.WaitUntil(ctx, "every instance to catch up", func() (bool, string, error) {
		behind := 0
		for _, r := range f.runners {
			if r.Status().Outputs < outputs {
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

// TB is the part of [testing.TB] the test helpers below use.
type TB interface {
	Helper()
	Context() context.Context
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// RunDemo runs run with args and a 20-second limit, logs the time it
// took and its report, and returns the report. An error fails the test
// at once.
func RunDemo(t TB, run RunFunc, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	err := run(ctx, args, &out)
	t.Logf("run %v took %v:\n%s", args, time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String()
}

// CheckUsageErrors checks that run returns a [UsageError], and writes
// nothing to its stdout, for each of the bad command lines.
func CheckUsageErrors(t TB, run RunFunc, bad [][]string) {
	t.Helper()
	for _, args := range bad {
		var out strings.Builder
		err := run(t.Context(), args, &out)
		var ue UsageError
		if !errors.As(err, &ue) {
			t.Errorf("run %v: got %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("run %v wrote %q to stdout", args, out.String())
		}
	}
}

// CheckInstances checks the instance lines of a demo's report out, as
// [ReportInstances] writes them for the DET named det: that there are
// instances of them, and that each instance has computed outputs
// outputs, won or lost each, and found no divergence. It returns how
// many outputs the instances won between them.
func CheckInstances(t TB, out, det string, instances, outputs int) (won int) {
	t.Helper()
	line := regexp.MustCompile(`(?m)^  (` + regexp.QuoteMeta(det) + `-\d+): outputs (\d+), won (\d+), lost (\d+), divergences (\d+)$`)
	lines := line.FindAllStringSubmatch(out, -1)
	if len(lines) != instances {
		t.Fatalf("output has %d instance lines, want %d", len(lines), instances)
	}
	for _, m := range lines {
		n, _ := strconv.Atoi(m[2])
		w, _ := strconv.Atoi(m[3])
		lost, _ := strconv.Atoi(m[4])
		if n != outputs || w+lost != outputs || m[5] != "0" {
			t.Errorf("%s: outputs %d, won %d, lost %d, divergences %s; want %d outputs, won+lost = outputs, no divergence",
				m[1], n, w, lost, m[5], outputs)
		}
		won += w
	}
	return won
}
