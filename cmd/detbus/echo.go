package main

import (
	"encoding/json"

	"github.com/detbus/detbus/transform"
)

// echoSpec is the DET the benchmark runs: one output per input, a copy of
// it, so that what is measured is the runtime and not business logic.
func echoSpec() transform.Spec {
	return transform.Spec{Name: "bench-echo", Version: "1", Inputs: []string{"bench.in"}, Output: "bench.out",
		New: func() transform.Transform { return &echo{} }}
}

type echo struct{ N uint64 }

func (e *echo) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	e.N++
	return [][]byte{in.Data}, nil
}

func (e *echo) Snapshot() ([]byte, error) { return transform.JSON(e), nil }
func (e *echo) Restore(b []byte) error    { return json.Unmarshal(b, e) }
