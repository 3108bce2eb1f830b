package transform

import (
	"iter"

	"github.com/detbus/detbus/transport"
)

// NewSnapshot builds a snapshot as an instance would, for tests of the
// store.
var NewSnapshot = newSnapshot

// WrapInputs changes the inputs r reads: a test ends them early.
func WrapInputs(r *Runner, wrap func(iter.Seq2[transport.Event, error]) iter.Seq2[transport.Event, error]) {
	r.wrapInputs = wrap
}

// BatchMaxBytes bounds the payload bytes of one batch of outputs.
const BatchMaxBytes = batchMaxBytes
