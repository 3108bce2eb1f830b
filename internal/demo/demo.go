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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
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
