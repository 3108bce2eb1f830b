// Package worker runs deterministic transforms as worker processes. A
// program that defines its own DETs gets the worker of `detbus worker` —
// its flags, NATS URL and credentials, metrics, status board, snapshots,
// generations, shadows and signal handling — in a few lines:
//
//	func main() { worker.Main(orders.Spec(), ledger.Spec()) }
//
// and runs one instance per process:
//
//	myworker orders --nats nats://10.0.0.5:4222 --user w1 --password ... --instance w1
//
// The transform's name may be left out when the program has only one.
// Several processes of the same transform race on its outputs: exactly one
// output lands per index, and each instance checks the ones it did not
// write (see package transform). `detbus worker` is this worker with the
// built-in examples.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/detbus/detbus/internal/cli"
	"github.com/detbus/detbus/internal/telemetry"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// Main runs the worker with the program's arguments until SIGINT or
// SIGTERM, then exits: status 0 after a clean stop, 2 for a usage error,
// 1 for any other failure (a divergence among them).
func Main(specs ...transform.Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	name := filepath.Base(os.Args[0])
	err := Run(ctx, name, os.Args[1:], os.Stdout, os.Stderr, specs...)
	stop()
	os.Exit(ExitCode(name, err, os.Stderr))
}

// ExitCode prints err, if any, to stderr after the program's name and
// returns the exit status Main uses for it.
func ExitCode(program string, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", program, err)
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// Run runs one instance of the transform that args name, among specs,
// until ctx is done (then it returns nil) or a fatal error (a divergence
// under the stop policy, a snapshot it cannot restore). program names the
// command in usage and errors. -h prints the flags and returns nil;
// mistakes in args are returned as usage errors.
func Run(ctx context.Context, program string, args []string, stdout, stderr io.Writer, specs ...transform.Spec) error {
	byName := map[string]transform.Spec{}
	var names []string
	for _, s := range specs {
		if _, dup := byName[s.Name]; dup {
			return fmt.Errorf("worker: two transforms named %q", s.Name)
		}
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return errors.New("worker: no transform to run")
	}
	fs := cli.NewFlagSet(program, stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s <transform> [flags]\n\ntransforms: %s\n\nflags:\n", program, strings.Join(names, ", "))
		fs.PrintDefaults()
	}
	var cf cli.ClientFlags
	cf.Register(fs)
	host, _ := os.Hostname()
	instance := fs.String("instance", fmt.Sprintf("%s-%d", host, os.Getpid()), "this instance's name in logs and status")
	every := fs.Int("snapshot-every", 1000, "save a snapshot every N inputs")
	interval := fs.Duration("snapshot-interval", time.Minute, "save a snapshot at least this often")
	noSnap := fs.Bool("no-snapshots", false, "neither restore nor save snapshots")
	policy := fs.String("on-divergence", "stop", `what to do on a divergence: "stop" or "observe" (keep comparing, never write)`)
	generation := fs.Uint("generation", 1, `the output generation: after a divergence, run generation N (2, 3, ...), which writes to "<output>.g<N>"`)
	startAfter := fs.Uint64("start-after", 0, "where a new generation starts: an input position at which the previous generation has a confirmed snapshot (0: the first input, empty state)")
	shadow := fs.Bool("shadow", false, "run as a shadow: compute and compare every output with the one that landed, write nothing, report matches and the first mismatch")
	statusEvery := fs.Duration("status-every", 2*time.Second, "publish this instance's status (its heartbeat) this often")
	metricsAddr := fs.String("metrics-addr", "", "serve /metrics (Prometheus format) on this address, e.g. 127.0.0.1:9464")
	minArgs := 1
	if len(names) == 1 {
		minArgs = 0
	}
	pos, err := cli.Parse(fs, args, minArgs, 1)
	if err != nil {
		return cli.HelpOK(err)
	}
	name := names[0]
	if len(pos) == 1 {
		name = pos[0]
	}
	spec, ok := byName[name]
	if !ok {
		return cli.Usagef("unknown transform %q (known: %s)", name, strings.Join(names, ", "))
	}
	cfg := transform.Config{Spec: spec, Instance: *instance, SnapshotEvery: *every, SnapshotInterval: *interval, StatusInterval: *statusEvery,
		Generation: *generation, StartAfter: *startAfter, Shadow: *shadow,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	switch *policy {
	case "stop":
	case "observe":
		cfg.OnDivergence = transform.ObserveOnDivergence
	default:
		return cli.Usagef("--on-divergence %q is neither stop nor observe", *policy)
	}
	tel, err := telemetry.Setup(ctx, program)
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	if *metricsAddr != "" {
		addr, err := cli.ServeMetrics(ctx, *metricsAddr, tel)
		if err != nil {
			return err
		}
		cfg.Logger.Info("metrics", "url", "http://"+addr+"/metrics")
	}
	var l *transport.Log
	if err := cli.Retry(ctx, "connect", func(rctx context.Context) (err error) {
		l, err = cf.Open(rctx)
		return err
	}); err != nil {
		return err
	}
	defer l.Close()
	cfg.Log = l
	store, board, err := OpenBuckets(ctx, l)
	if err != nil {
		return err
	}
	cfg.Board = board
	if !*noSnap {
		cfg.Snapshots = store
	}
	r, err := transform.NewRunner(cfg)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	cfg.Logger.Info("worker started", "transform", cfg.Spec.Name, "instance", *instance, "inputs", strings.Join(cfg.Spec.Inputs, ","), "output", cfg.Spec.Output)
	err = r.Run(ctx)
	st := r.Status()
	if st.Shadow {
		fmt.Fprintf(stdout, "%s/%s (shadow): %d inputs, %d outputs match, %d differ\n", st.Name, st.Instance, st.Inputs, st.Matches, st.Mismatches)
	} else {
		fmt.Fprintf(stdout, "%s/%s: %d inputs, %d outputs, won %d, lost %d, %d divergences\n",
			st.Name, st.Instance, st.Inputs, st.Outputs, st.Won, st.Lost, len(st.Divergences))
	}
	return err
}

// OpenBuckets opens the snapshot and status buckets beside l (with as
// many replicas as the log's stream), retrying while the node or cluster
// cannot create them yet.
func OpenBuckets(ctx context.Context, l *transport.Log) (store *transform.SnapshotStore, board *transform.StatusBoard, err error) {
	err = cli.Retry(ctx, "open the snapshot and status buckets", func(ctx context.Context) (err error) {
		if store, err = transform.OpenSnapshotStore(ctx, l, ""); err != nil {
			return err
		}
		board, err = transform.OpenStatusBoard(ctx, l)
		return err
	})
	return store, board, err
}
