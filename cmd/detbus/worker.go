package main

import (
	"context"
	"io"
	"sort"
	"strings"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/examples/matching"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/worker"
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
	specs := make([]transform.Spec, 0, len(transforms))
	for _, f := range transforms {
		specs = append(specs, f())
	}
	return worker.Run(ctx, "detbus worker", args, stdout, stderr, specs...)
}

// openBuckets opens the snapshot and status buckets beside l.
func openBuckets(ctx context.Context, l *transport.Log) (*transform.SnapshotStore, *transform.StatusBoard, error) {
	return worker.OpenBuckets(ctx, l)
}
