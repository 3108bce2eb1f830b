package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/examples/matching"
	"github.com/detbus/detbus/internal/cli"
	"github.com/detbus/detbus/internal/telemetry"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// transforms are the DETs a worker can run, by name.
var transforms = map[string]func() transform.Spec{
	"bank":       bank.Spec,
	"matching":   matching.Spec,
	"bench-echo": echoSpec,
}

func transformNames() string {
	names := make([]string, 0, len(transforms))
	for n := range transforms {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("worker", stderr)
	var cf clientFlags
	cf.register(fs)
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
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	specFn, ok := transforms[pos[0]]
	if !ok {
		return usagef("unknown transform %q (known: %s)", pos[0], transformNames())
	}
	cfg := transform.Config{Spec: specFn(), Instance: *instance, SnapshotEvery: *every, SnapshotInterval: *interval, StatusInterval: *statusEvery,
		Generation: *generation, StartAfter: *startAfter, Shadow: *shadow,
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	switch *policy {
	case "stop":
	case "observe":
		cfg.OnDivergence = transform.ObserveOnDivergence
	default:
		return usagef("--on-divergence %q is neither stop nor observe", *policy)
	}
	tel, err := telemetry.Setup(ctx, "detbus-worker")
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
	if err := retry(ctx, "connect", func(rctx context.Context) (err error) {
		l, err = cf.open(rctx)
		return err
	}); err != nil {
		return err
	}
	defer l.Close()
	cfg.Log = l
	store, board, err := openBuckets(ctx, l)
	if err != nil {
		return err
	}
	cfg.Board = board
	if !*noSnap {
		cfg.Snapshots = store
	}
	r, err := transform.NewRunner(cfg)
	if err != nil {
		return usagef("%v", err)
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

// openBuckets opens the snapshot and status buckets (with as many replicas
// as the log's stream), retrying while the node or cluster cannot create
// them yet.
func openBuckets(ctx context.Context, l *transport.Log) (store *transform.SnapshotStore, board *transform.StatusBoard, err error) {
	err = retry(ctx, "open the snapshot and status buckets", func(ctx context.Context) (err error) {
		if store, err = transform.OpenSnapshotStore(ctx, l, ""); err != nil {
			return err
		}
		board, err = transform.OpenStatusBoard(ctx, l)
		return err
	})
	return store, board, err
}
