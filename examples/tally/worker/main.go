// Command worker runs the tally DET (package tally) as a worker process,
// with the flags of `detbus worker`:
//
//	go run ./examples/tally/worker --nats nats://127.0.0.1:4222 --instance t1
//
// Start two or three of them: they race, and any of them may be killed.
// `detbus status` lists them, `--metrics-addr` serves their metrics.
package main

import (
	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/transform/worker"
)

func main() { worker.Main(tally.Spec()) }
