package demo_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/demo"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// echo is a DET that writes one output for each input: the input's
// payload, as a JSON string, after salt. Instances with different salts
// diverge.
type echo struct{ salt string }

func (e *echo) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	return [][]byte{transform.JSON(e.salt + string(in.Data))}, nil
}
func (e *echo) Snapshot() ([]byte, error) { return []byte(e.salt), nil }
func (e *echo) Restore(b []byte) error    { e.salt = string(b); return nil }

func echoSpec(name string, newEcho func() *echo) transform.Spec {
	return transform.Spec{Name: name, Version: "1", Inputs: []string{"notes.*"}, Output: name + ".out",
		New: func() transform.Transform { return newEcho() }}
}

// program demonstrates the echo DET with --notes random notes.
var program = demo.Program{Spec: echoSpec("echo", func() *echo { return &echo{} }), InputNoun: "notes", DefaultInputs: 5, OutputNoun: "echoes"}

// writeNotes writes s.Options.Inputs notes, alternately to notes.a and
// notes.b, and returns how many notes the log holds.
func writeNotes(ctx context.Context, s *demo.Setup) (uint64, error) {
	for i := range s.Options.Inputs {
		if _, err := s.Log.Write(ctx, fmt.Sprintf("notes.%c", 'a'+i%2), transform.JSON(i)); err != nil {
			return 0, err
		}
	}
	return s.CountInputs(ctx)
}

// runEcho writes the notes, waits for want echoes (every note's, if want
// is 0), and reports them as a demo does.
func runEcho(want uint64) func(context.Context, *demo.Setup, io.Writer) error {
	return func(ctx context.Context, s *demo.Setup, stdout io.Writer) error {
		notes, err := writeNotes(ctx, s)
		if err != nil {
			return err
		}
		if want == 0 {
			want = notes
		}
		if want < notes {
			// Let every echo land first, so that Settle finds more than
			// it wants whatever the timing.
			err := s.Fleet.WaitUntil(ctx, "every echo", func() (bool, string, error) {
				c, err := s.Log.Count(ctx, s.Program.Spec.Output)
				return c == notes, fmt.Sprintf("%d echoes", c), err
			})
			if err != nil {
				return err
			}
		}
		statuses, outputs, err := s.Settle(ctx, want, "every note to be echoed", "notes echoed", func(have uint64) error {
			return fmt.Errorf("%s has %d echoes, want %d", s.Program.Spec.Output, have, want)
		})
		if err != nil {
			return err
		}
		inputs, err := s.ReadInputs(ctx)
		if err != nil {
			return err
		}
		var problems []string
		if len(inputs) != len(outputs) {
			problems = append(problems, fmt.Sprintf("%d notes, %d echoes", len(inputs), len(outputs)))
		}
		for i := range min(len(inputs), len(outputs)) {
			if want := string(transform.JSON(string(inputs[i].Data))); string(outputs[i].Data) != want {
				problems = append(problems, fmt.Sprintf("echo %d is %s, want %s", i, outputs[i].Data, want))
			}
		}
		return demo.Verdict(stdout, append(problems, demo.ReportInstances(stdout, statuses, nil)...))
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// storeRemoved checks that the embedded node's store, named in the
// report out, is gone.
func storeRemoved(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^node: embedded, in-process, store in (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no embedded node in %q", out)
	}
	if !strings.Contains(m[1], "detbus-echo-demo-") {
		t.Errorf("store %s is not named after the program", m[1])
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("store %s is still there: %v", m[1], err)
	}
}

func TestRunOnEmbeddedNode(t *testing.T) {
	t.Parallel()
	run := func(ctx context.Context, args []string, stdout io.Writer) error {
		return program.Run(ctx, args, stdout, runEcho(0))
	}
	out := demo.RunDemo(t, run, "--notes", "7", "--instances", "2")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`^node: embedded, in-process, store in \S+\n`),
		regexp.MustCompile(`(?m)^instances: 2 of echo, racing to write echo.out$`),
		regexp.MustCompile(`(?m)^all 7 notes echoed after \S+$`),
		regexp.MustCompile(`\ninstances:\n(  echo-\d: .*\n){2}replicas agree: yes\n$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output does not match %s", want)
		}
	}
	if won := demo.CheckInstances(t, out, "echo", 2, 7); won != 7 {
		t.Errorf("the instances won %d echoes between them, want 7", won)
	}
	storeRemoved(t, out)
}

func TestSettleErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		want uint64
		errs []string
	}{
		{"too many", []string{"--notes", "3", "--instances", "2"}, 2,
			[]string{"waiting for every note to be echoed: echo.out has 3 echoes, want 2"}},
		{"timeout", []string{"--notes", "3", "--instances", "1", "--timeout", "300ms"}, 4,
			[]string{"waiting for every note to be echoed: context deadline exceeded ("}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			err := program.Run(ctxT(t), c.args, &out, runEcho(c.want))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range c.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(out.String(), "\nall ") {
				t.Errorf("reported the outputs as written:\n%s", out.String())
			}
			storeRemoved(t, out.String())
		})
	}
}

func TestStartOnRunningNode(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	for i := range 2 {
		if _, err := l.Write(ctx, "notes.a", transform.JSON(i)); err != nil {
			t.Fatal(err)
		}
	}

	var out strings.Builder
	s, err := program.Start(ctx, demo.Options{NATS: url, Instances: 1, Timeout: time.Minute}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if s.InputsBefore != 2 || s.OutputsBefore != 0 {
		t.Errorf("before the run: %d inputs and %d outputs, want 2 and 0", s.InputsBefore, s.OutputsBefore)
	}
	want := "node: " + url + " (appending to its log)\ninstances: 1 of echo, racing to write echo.out\n"
	if out.String() != want {
		t.Errorf("Start reported %q, want %q", out.String(), want)
	}
	// The instance echoes the notes that were there before it started.
	statuses, outputs, err := s.Settle(ctx, 2, "the old notes", "old notes echoed", func(have uint64) error {
		return fmt.Errorf("%d echoes", have)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 1 || statuses[0].Instance != "echo-1" || statuses[0].Won != 2 || len(outputs) != 2 {
		t.Errorf("statuses %+v, %d outputs; want echo-1 to have won 2", statuses, len(outputs))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close leaves a running node alone.
	if n, err := l.Count(ctx, "echo.out"); err != nil || n != 2 {
		t.Errorf("after Close: %d echoes, %v; want 2", n, err)
	}
}

func TestFleetStopsWaitingWhenAnInstanceFails(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	var salts atomic.Int32
	spec := echoSpec("salted", func() *echo { return &echo{salt: fmt.Sprint(salts.Add(1))} })
	n, err := demo.StartNode("", "salted-test")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	l, err := n.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := demo.StartFleet(ctx, n, spec, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	if _, err := l.Write(ctx, "notes.a", transform.JSON(0)); err != nil {
		t.Fatal(err)
	}

	// One instance writes its echo, the other finds it differs from its
	// own and stops.
	err = f.WaitUntil(ctx, "nothing", func() (bool, string, error) { return false, "still nothing", nil })
	if want := "waiting for nothing: an instance failed (still nothing)"; err == nil || err.Error() != want {
		t.Errorf("WaitUntil: %v, want %q", err, want)
	}
	err = f.Stop()
	if !errors.Is(err, transform.ErrDivergence) || !strings.HasPrefix(err.Error(), "instance salted-") {
		t.Errorf("Stop: %v, want the divergence of an instance", err)
	}
	if again := f.Stop(); again != err {
		t.Errorf("Stop again: %v, want %v", again, err)
	}
	diverged := 0
	for _, st := range f.Statuses() {
		diverged += len(st.Divergences)
	}
	if diverged != 1 {
		t.Errorf("%d divergences, want 1", diverged)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	if got := program.Name(); got != "echo-demo" {
		t.Errorf("Name() = %q, want echo-demo", got)
	}
	o, err := program.Parse(nil)
	if want := (demo.Options{Instances: 3, Inputs: 5, Seed: 1, Timeout: time.Minute}); err != nil || o != want {
		t.Errorf("Parse(nil) = %+v, %v; want %+v", o, err, want)
	}
	o, err = program.Parse([]string{"--nats", "nats://h:1", "--instances", "2", "--notes", "9", "--seed", "4", "--timeout", "2s"})
	if want := (demo.Options{NATS: "nats://h:1", Instances: 2, Inputs: 9, Seed: 4, Timeout: 2 * time.Second}); err != nil || o != want {
		t.Errorf("Parse = %+v, %v; want %+v", o, err, want)
	}
	if _, err := program.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse --help: %v, want flag.ErrHelp", err)
	}
	run := func(ctx context.Context, args []string, stdout io.Writer) error {
		return program.Run(ctx, args, stdout, func(context.Context, *demo.Setup, io.Writer) error {
			return errors.New("ran on a bad command line")
		})
	}
	demo.CheckUsageErrors(t, run, [][]string{
		{"--commands", "3"},
		{"--notes", "0"},
		{"--instances", "0"},
		{"--timeout", "0s"},
		{"extra"},
	})
}
