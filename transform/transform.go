package transform

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"

	"github.com/detbus/detbus/hlc"
)

// Transform is a deterministic transform (DET): business logic that folds
// input events, in the log's total order, into state and output events.
// Every instance of a DET must compute the same outputs from the same
// inputs; see the package documentation for what that forbids.
//
// A Transform is used by one goroutine at a time.
type Transform interface {
	// Step applies one input to the state and returns the payloads of the
	// outputs it causes, in order (none is fine). It must depend only on
	// the state, the input and what ctx supplies. If it returns an error
	// it must leave the state as it was: the runner records the error as
	// a rejection and goes on (see [ErrorPolicy]).
	Step(ctx *Context, in Input) ([][]byte, error)
	// Snapshot encodes the state. Two instances at the same input
	// position must produce the same bytes (encode maps in sorted order).
	Snapshot() ([]byte, error)
	// Restore replaces the state with a decoded snapshot.
	Restore(snapshot []byte) error
}

// Spec describes a DET: where it reads, where it writes, and how to make
// a fresh instance.
type Spec struct {
	// Name identifies the DET; instances with the same name race to write
	// the same outputs, and share snapshots.
	Name string
	// Version names the logic; a snapshot taken by another version is
	// refused.
	Version string
	// Inputs are the ESKs (literal or wildcard) the DET reads.
	Inputs []string
	// Output is the ESK the DET writes; it must not match Inputs.
	Output string
	// New returns a DET in its initial state.
	New func() Transform
}

// Input is one input event as a DET sees it.
type Input struct {
	ESK         string
	Index       uint64        // position among the events of ESK
	Seq         uint64        // stream sequence: the input's place in the total order
	Time        hlc.Timestamp // HLC time of the event, or the time the stream stored it
	ContentType string        // "" means JSON
	Data        []byte
}

// Decode decodes a JSON input (the only content type a DET is handed
// without asking) into v, which must be a pointer to a concrete type.
func (in Input) Decode(v any) error {
	if in.ContentType != "" && in.ContentType != "application/json" {
		return fmt.Errorf("transform: input %s#%d has content type %q, not JSON", in.ESK, in.Index, in.ContentType)
	}
	if err := json.Unmarshal(in.Data, v); err != nil {
		return fmt.Errorf("transform: input %s#%d is not valid JSON for %T: %w", in.ESK, in.Index, v, err)
	}
	return nil
}

// Context supplies what a step may depend on besides its state and
// input: time taken from the input, and randomness seeded from the
// input's position, so that every instance draws the same numbers.
type Context struct {
	in  Input
	rng *rand.Rand
}

// NewContext returns the context for a step on in. The runner makes one
// per input; tests of a DET use it directly.
func NewContext(in Input) *Context { return &Context{in: in} }

// Time is the input's time: its HLC time, or the time the stream stored
// it. Use it instead of the wall clock.
func (c *Context) Time() hlc.Timestamp { return c.in.Time }

// Rand is a random source seeded from the input's stream position.
func (c *Context) Rand() *rand.Rand {
	if c.rng == nil {
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], c.in.Seq)
		copy(seed[8:], "detbus transform random source")
		c.rng = rand.New(rand.NewChaCha8(seed))
	}
	return c.rng
}

// JSON encodes v for [Transform.Step]'s outputs, panicking only on values
// encoding/json cannot encode (a programming error in the DET).
func JSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("transform: encode output %T: %v", v, err))
	}
	return b
}
