// Package lincheck is a porcupine model of the event log's conditional
// append and read by index, for checking that histories of concurrent
// ExistsOrWrite and Get calls on transport.Log are linearizable.
//
// The sequential specification, per ESK an append-only log of payloads:
//
//   - append(esk, i, p) when i == len: written, and p is appended;
//   - append(esk, i, p) when i < len: present, equal iff log[i] == p;
//   - append(esk, i, p) when i > len: an index-ahead error;
//   - get(esk, i): found with log[i] when i < len, else not found.
//
// ESKs are independent, so [Model] partitions a history by ESK and porcupine
// checks each part alone.
//
// A call whose outcome the caller never learned (a timeout, an unavailable
// cluster) belongs in a history only once its effect is known: if its
// payload landed at the index, as a written append whose return is the time
// that was learned; if not, not at all, since an append that changed nothing
// and told nothing is indistinguishable from one never made. A read that
// failed is left out likewise.
package lincheck

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is the kind of an operation.
type Kind uint8

// The operations of the model.
const (
	Append Kind = iota + 1 // existsOrWrite(esk, index, payload)
	Get                    // get(esk, index)
)

// Input is what an operation was asked.
type Input struct {
	Op      Kind
	ESK     string
	Index   uint64
	Payload string // Append only
}

// Output is what an operation answered.
type Output struct {
	// Append: Written by this call; Present, with Equal telling whether
	// the present event equals the payload; or Ahead, an index-ahead error.
	Written, Present, Equal, Ahead bool
	// Get: Found, with the Payload at the index.
	Found   bool
	Payload string
}

// Outputs of an append.
var (
	Written      = Output{Written: true, Equal: true}
	PresentEqual = Output{Present: true, Equal: true}
	PresentOther = Output{Present: true}
	Ahead        = Output{Ahead: true}
	NotFound     = Output{}
)

// FoundPayload is the output of a get that found p.
func FoundPayload(p string) Output { return Output{Found: true, Payload: p} }

// AppendOp is an append in a history: client, call and return times, and
// what it was asked and answered.
func AppendOp(client int, call, ret int64, esk string, index uint64, payload string, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret,
		Input: Input{Op: Append, ESK: esk, Index: index, Payload: payload}, Output: out}
}

// GetOp is a get in a history.
func GetOp(client int, call, ret int64, esk string, index uint64, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret,
		Input: Input{Op: Get, ESK: esk, Index: index}, Output: out}
}

// state is one ESK's log. Step never modifies a state; it returns a new
// one.
type state []string

// Model is the porcupine model of the specification above. Operations'
// inputs are [Input] values and outputs [Output] values.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byESK := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			esk := op.Input.(Input).ESK
			if _, ok := byESK[esk]; !ok {
				keys = append(keys, esk)
			}
			byESK[esk] = append(byESK[esk], op)
		}
		slices.Sort(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byESK[k])
		}
		return out
	},
	Init: func() any { return state(nil) },
	Step: func(st, input, output any) (bool, any) {
		s, in, out := st.(state), input.(Input), output.(Output)
		n := uint64(len(s))
		switch in.Op {
		case Append:
			switch {
			case in.Index == n:
				if out.Written && !out.Present && !out.Ahead && out.Equal {
					next := make(state, len(s), len(s)+1)
					copy(next, s)
					return true, append(next, in.Payload)
				}
			case in.Index < n:
				if out.Present && !out.Written && !out.Ahead && out.Equal == (s[in.Index] == in.Payload) {
					return true, s
				}
			default:
				if out.Ahead && !out.Written && !out.Present {
					return true, s
				}
			}
			return false, s
		case Get:
			if in.Index < n {
				return out.Found && out.Payload == s[in.Index], s
			}
			return !out.Found, s
		}
		return false, s
	},
	Equal: func(a, b any) bool { return slices.Equal(a.(state), b.(state)) },
	Hash: func(st any) uint64 {
		h := fnv.New64a()
		for _, p := range st.(state) {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string { return Describe(input.(Input), output.(Output)) },
	DescribeState: func(st any) string {
		s := st.(state)
		if len(s) <= 4 {
			return fmt.Sprintf("%d: %v", len(s), []string(s))
		}
		return fmt.Sprintf("%d: [... %s]", len(s), strings.Join(s[len(s)-4:], " "))
	},
}

// Describe renders an operation for reports: "append(esk, i, p) -> written".
func Describe(in Input, out Output) string {
	if in.Op == Get {
		if !out.Found {
			return fmt.Sprintf("get(%s, %d) -> not found", in.ESK, in.Index)
		}
		return fmt.Sprintf("get(%s, %d) -> %s", in.ESK, in.Index, out.Payload)
	}
	res := "?"
	switch {
	case out.Written:
		res = "written"
	case out.Present:
		res = fmt.Sprintf("present, equal=%v", out.Equal)
	case out.Ahead:
		res = "index ahead"
	}
	return fmt.Sprintf("append(%s, %d, %s) -> %s", in.ESK, in.Index, in.Payload, res)
}

// Counts tallies a history's outcomes, to tell whether a workload
// exercised every one of them.
type Counts struct {
	Written, PresentEqual, PresentOther, Ahead int
	Gets, Found                                int
}

// Count tallies history.
func Count(history []porcupine.Operation) Counts {
	var c Counts
	for _, op := range history {
		out := op.Output.(Output)
		switch op.Input.(Input).Op {
		case Append:
			switch {
			case out.Written:
				c.Written++
			case out.Present && out.Equal:
				c.PresentEqual++
			case out.Present:
				c.PresentOther++
			case out.Ahead:
				c.Ahead++
			}
		case Get:
			c.Gets++
			if out.Found {
				c.Found++
			}
		}
	}
	return c
}

// All reports whether every outcome came up at least once: each kind of
// append answer, a get that found and one that did not.
func (c Counts) All() bool {
	return c.Written > 0 && c.PresentEqual > 0 && c.PresentOther > 0 && c.Ahead > 0 && c.Found > 0 && c.Found < c.Gets
}

func (c Counts) String() string {
	return fmt.Sprintf("appends written %d, present equal %d, present other %d, ahead %d; gets %d (found %d)",
		c.Written, c.PresentEqual, c.PresentOther, c.Ahead, c.Gets, c.Found)
}

// Check checks history against [Model] for at most timeout. When the
// answer is not porcupine.Ok it writes porcupine's visualization of the
// history into dir and returns its path ("" if it could not be written).
func Check(history []porcupine.Operation, timeout time.Duration, dir string) (res porcupine.CheckResult, visualization string) {
	res, info := porcupine.CheckOperationsVerbose(Model, history, timeout)
	if res == porcupine.Ok {
		return res, ""
	}
	path := filepath.Join(dir, "linearizability.html")
	if err := porcupine.VisualizePath(Model, info, path); err != nil {
		return res, ""
	}
	return res, path
}
