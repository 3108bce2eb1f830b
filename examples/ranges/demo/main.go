// The ranges demo has several nodes claim key ranges at once, each through
// a replica of the key/value store of its own, and checks that every
// replica names the same owner for every range.
//
// Each node is a kv.Store on its own NATS connection with a
// ranges.Registry on it. The nodes register (with a random priority) and
// release random ranges of the key space, concurrently, writing to the kv
// table "ranges" (an add-wins map of range and node to a PN-counter). When
// they are done, every replica catches up with the log, and so does a new
// replica that folds the log from its start; the demo prints the owners
// and checks that all the replicas name the same owners and hold the same
// state, byte for byte. It prints "replicas agree: yes", or exits with
// status 1 and says what differs.
//
// Run it with an embedded node, kept in a temporary directory that is
// removed at exit:
//
//	go run ./examples/ranges/demo
//	go run ./examples/ranges/demo --nodes 6 --ops 500 --seed 7
//
// or against a running node (`go run ./cmd/detbus serve`, say), whose
// claims from earlier runs it keeps:
//
//	go run ./examples/ranges/demo --nats nats://127.0.0.1:4222
//
// Other writers of kv tables may not run meanwhile, since the replicas'
// states are compared. Usage errors exit with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/examples/ranges"
	"github.com/detbus/detbus/internal/demo"
	"github.com/detbus/detbus/kv"
)

// keyRanges split the key space.
var keyRanges = []ranges.Range{{Start: "", End: "d"}, {Start: "d", End: "h"}, {Start: "h", End: "m"}, {Start: "m", End: "r"}, {Start: "r", End: "w"}, {Start: "w", End: ""}}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, &ue):
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "ranges demo:", err)
	os.Exit(1)
}

// usageError is a bad command line; the flag set has printed it.
type usageError struct{ error }

type options struct {
	nats    string
	nodes   int
	ops     int
	seed    uint64
	timeout time.Duration
}

func parseArgs(args []string) (options, error) {
	fs := flag.NewFlagSet("ranges-demo", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.nats, "nats", "", "URLs of a running node (default: start an embedded one)")
	fs.IntVar(&o.nodes, "nodes", 4, "nodes claiming ranges, each with a replica of its own")
	fs.IntVar(&o.ops, "ops", 200, "registrations and releases to write, shared among the nodes")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random claims")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the replicas to catch up")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.nodes < 1:
		bad = fmt.Errorf("--nodes must be at least 1, not %d", o.nodes)
	case o.ops < 0:
		bad = fmt.Errorf("--ops must not be negative, not %d", o.ops)
	case o.timeout <= 0:
		bad = fmt.Errorf("--timeout must be positive")
	}
	if bad != nil {
		fmt.Fprintln(fs.Output(), bad)
		fs.Usage()
		return o, usageError{bad}
	}
	return o, nil
}

// replica is one node's view: its store and registry.
type replica struct {
	node  string
	store *kv.Store
	reg   *ranges.Registry
	close func()
}

func openReplica(ctx context.Context, nd *demo.Node, node string, opts kv.Options) (*replica, error) {
	l, err := nd.Open(ctx)
	if err != nil {
		return nil, err
	}
	opts.SnapshotEvery, opts.SnapshotInterval = -1, -1
	s, err := kv.Open(ctx, l, opts)
	if err != nil {
		l.Close()
		return nil, err
	}
	reg, err := ranges.Open(ctx, s, "")
	if err != nil {
		s.Close()
		l.Close()
		return nil, err
	}
	return &replica{node: node, store: s, reg: reg, close: func() { s.Close(); l.Close() }}, nil
}

// run runs the demo; it returns a usageError for a bad command line.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseArgs(args)
	if err != nil {
		return err
	}
	nd, err := demo.StartNode(o.nats, "ranges-demo")
	if err != nil {
		return err
	}
	defer nd.Stop()
	fmt.Fprintf(stdout, "node: %s\n", nd)

	var reps []*replica
	defer func() {
		for _, r := range reps {
			r.close()
		}
	}()
	for i := range o.nodes {
		r, err := openReplica(ctx, nd, fmt.Sprintf("node-%d", i+1), kv.Options{})
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	fmt.Fprintf(stdout, "replicas: %d nodes, each with a kv store on a connection of its own, claiming %d ranges in table %q\n",
		o.nodes, len(keyRanges), ranges.DefaultTable)

	registered, released, err := claim(ctx, reps, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d ops: %d registrations, %d releases (seed %d)\n", registered+released, registered, released, o.seed)

	late, err := openReplica(ctx, nd, "late", kv.Options{NoRestore: true})
	if err != nil {
		return err
	}
	reps = append(reps, late)
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	for _, r := range reps {
		if err := r.store.Sync(wctx); err != nil {
			return fmt.Errorf("replica of %s catching up: %w", r.node, err)
		}
	}

	owners, err := reps[0].reg.Owners()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "owners:")
	for _, ow := range owners {
		var claims []string
		for _, c := range ow.Claims {
			claims = append(claims, fmt.Sprintf("%s:%d", c.Node, c.Priority))
		}
		fmt.Fprintf(stdout, "  %-6s %-8s priority %-3d claims %s\n", ow.Range, ow.Owner, ow.Priority, strings.Join(claims, " "))
	}
	return demo.Verdict(stdout, compare(reps, owners))
}

// claim has every node register and release random ranges, all at once,
// and returns how many of each it wrote.
func claim(ctx context.Context, reps []*replica, o options) (registered, released int, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(reps))
	for i, r := range reps {
		n := o.ops / len(reps)
		if i < o.ops%len(reps) {
			n++
		}
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(o.seed, uint64(i)))
			for range n {
				kr := keyRanges[rnd.IntN(len(keyRanges))]
				var err error
				release := rnd.IntN(4) == 0
				if release {
					_, err = r.reg.Release(ctx, r.node, kr)
				} else {
					_, err = r.reg.Register(ctx, r.node, kr, 1+rnd.Int64N(9))
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", r.node, err)
					return
				}
				mu.Lock()
				if release {
					released++
				} else {
					registered++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return registered, released, errors.Join(errs...)
}

// compare checks that every replica names the owners the first one names
// and holds the same state.
func compare(reps []*replica, owners []ranges.Ownership) []string {
	var problems []string
	first, seq, err := reps[0].store.Dump()
	if err != nil {
		return []string{err.Error()}
	}
	for _, r := range reps[1:] {
		got, err := r.reg.Owners()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if !reflect.DeepEqual(got, owners) {
			problems = append(problems, fmt.Sprintf("the replica of %s names owners %+v, the replica of %s %+v", r.node, got, reps[0].node, owners))
		}
		state, at, err := r.store.Dump()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if at != seq || string(state) != string(first) {
			problems = append(problems, fmt.Sprintf("the replica of %s holds another state (at seq %d) than the replica of %s (at seq %d)", r.node, at, reps[0].node, seq))
		}
	}
	return problems
}
