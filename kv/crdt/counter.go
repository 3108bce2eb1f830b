package crdt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unicode/utf8"

	"github.com/detbus/detbus/hlc"
)

// ErrOverflow is returned by [Counter.Exact] when the counter's exact total
// does not fit in an int64.
var ErrOverflow = errors.New("crdt: counter total overflows int64")

// CounterOp adds Delta to a [Counter] on behalf of Writer.
type CounterOp struct {
	// Dot is the identity of the event that carries the op; the counter
	// remembers it so that the op is counted once however often it arrives.
	Dot Dot
	// TS is the event's hybrid logical clock time. The counter does not use
	// it.
	TS hlc.Timestamp
	// Writer identifies who counts. It must be non-empty valid UTF-8.
	Writer string
	// Delta is added to the total: positive for an increment, negative for
	// a decrement. Any int64 is accepted.
	Delta int64
}

// Counter is a PN-counter. It keeps, per writer, every applied op's Dot with
// its delta, so applying an op twice counts it once and merging is the union
// of the applied ops. The total is the exact sum of all deltas.
//
// The exact total is kept with 128-bit arithmetic as ops are added, so it
// does not depend on the order ops arrived in (2^64 ops would be needed to
// overflow it). [Counter.Value] saturates it to [math.MinInt64] or
// [math.MaxInt64] when it does not fit in an int64; [Counter.Exact] reports
// that case as [ErrOverflow] instead.
//
// The zero Counter is zero, ready to use. The state grows with every op.
type Counter struct {
	writers map[string]map[Dot]int64
	// hi and lo are the sum of the deltas in writers, a 128-bit two's
	// complement number.
	hi, lo uint64
}

// Apply applies op. Re-applying an op changes nothing. An invalid op (zero
// Dot, empty writer) is rejected with an error wrapping [ErrInvalidOp].
func (c *Counter) Apply(op CounterOp) error {
	if err := op.Dot.validate(); err != nil {
		return invalidOp("Counter", "%v", err)
	}
	if op.Writer == "" || !utf8.ValidString(op.Writer) {
		return invalidOp("Counter", "op %s: writer %q is empty or not valid UTF-8", op.Dot, op.Writer)
	}
	c.put(op.Writer, op.Dot, op.Delta)
	return nil
}

// put records delta for (w, d). Should a Dot be reused with another delta
// for the same writer, the greater delta is kept, so that the result does
// not depend on arrival order.
func (c *Counter) put(w string, d Dot, delta int64) {
	if c.writers == nil {
		c.writers = map[string]map[Dot]int64{}
	}
	ops := c.writers[w]
	if ops == nil {
		ops = map[Dot]int64{}
		c.writers[w] = ops
	}
	old, ok := ops[d]
	if ok && delta <= old {
		return
	}
	ops[d] = delta
	if ok {
		c.sub(old)
	}
	c.add(delta)
}

// add adds delta to the total.
func (c *Counter) add(delta int64) {
	var carry uint64
	c.lo, carry = bits.Add64(c.lo, uint64(delta), 0)
	c.hi += uint64(delta>>63) + carry
}

// sub subtracts delta from the total.
func (c *Counter) sub(delta int64) {
	var borrow uint64
	c.lo, borrow = bits.Sub64(c.lo, uint64(delta), 0)
	c.hi -= uint64(delta>>63) + borrow
}

// Merge merges other into c: the union of both sides' ops. other is not
// modified and shares no memory with c afterwards.
func (c *Counter) Merge(other *Counter) {
	if other == nil {
		return
	}
	for w, ops := range other.writers {
		for d, delta := range ops {
			c.put(w, d, delta)
		}
	}
}

// Value returns the total, saturated to [math.MinInt64] or [math.MaxInt64]
// when the exact total does not fit in an int64. It takes constant time.
func (c *Counter) Value() int64 {
	v, _ := c.Exact()
	return v
}

// Exact returns the total, or the saturated total and [ErrOverflow] when the
// exact total does not fit in an int64.
func (c *Counter) Exact() (int64, error) {
	if c == nil {
		return 0, nil
	}
	hi, lo := int64(c.hi), int64(c.lo)
	switch {
	case hi == lo>>63: // hi only extends lo's sign
		return lo, nil
	case hi < 0:
		return math.MinInt64, ErrOverflow
	}
	return math.MaxInt64, ErrOverflow
}

// Equal reports whether c and other hold the same applied ops. A nil counter
// equals an empty one.
func (c *Counter) Equal(other *Counter) bool {
	var a, b map[string]map[Dot]int64
	if c != nil {
		a = c.writers
	}
	if other != nil {
		b = other.writers
	}
	if len(a) != len(b) {
		return false
	}
	for w, ops := range a {
		oops, ok := b[w]
		if !ok || len(ops) != len(oops) {
			return false
		}
		for d, delta := range ops {
			if od, ok := oops[d]; !ok || od != delta {
				return false
			}
		}
	}
	return true
}

// Clone returns a deep copy of c.
func (c *Counter) Clone() *Counter {
	n := &Counter{}
	n.Merge(c)
	return n
}

type counterWire struct {
	Writers []counterWriterWire `json:"writers"`
}

type counterWriterWire struct {
	Writer *string         `json:"writer"`
	Ops    []counterOpWire `json:"ops"`
}

type counterOpWire struct {
	Dot   *dotJSON `json:"dot"`
	Delta *int64   `json:"delta"`
}

// MarshalJSON encodes the state as
// {"writers":[{"writer":"w","ops":[{"dot":{...},"delta":n},...]},...]},
// writers in increasing byte order and each writer's ops by Dot.
func (c *Counter) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.wire())
}

func (c *Counter) wire() counterWire {
	w := counterWire{Writers: []counterWriterWire{}}
	if c != nil {
		names := make([]string, 0, len(c.writers))
		for name := range c.writers {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			ops := c.writers[name]
			ww := counterWriterWire{Writer: &name, Ops: make([]counterOpWire, 0, len(ops))}
			dots := make([]Dot, 0, len(ops))
			for d := range ops {
				dots = append(dots, d)
			}
			slices.SortFunc(dots, Dot.Compare)
			for _, d := range dots {
				delta := ops[d]
				dj := dotJSON(d)
				ww.Ops = append(ww.Ops, counterOpWire{Dot: &dj, Delta: &delta})
			}
			w.Writers = append(w.Writers, ww)
		}
	}
	return w
}

// UnmarshalJSON decodes the form written by [Counter.MarshalJSON], replacing
// c's state. Writers and each writer's dots must be strictly increasing, as
// written, and every writer needs at least one op. Errors wrap
// [ErrMalformed].
func (c *Counter) UnmarshalJSON(data []byte) error {
	var w counterWire
	if err := decodeStrict(data, &w); err != nil {
		return malformed("Counter", err)
	}
	n, err := w.state()
	if err != nil {
		return malformed("Counter", err)
	}
	*c = n
	return nil
}

func (w counterWire) state() (Counter, error) {
	n := Counter{}
	var prev string
	for i, ww := range w.Writers {
		if ww.Writer == nil || *ww.Writer == "" {
			return Counter{}, fmt.Errorf("writers[%d]: missing or empty \"writer\"", i)
		}
		name := *ww.Writer
		if i > 0 && name <= prev {
			return Counter{}, fmt.Errorf("writers[%d]: %q not after %q (must be strictly increasing)", i, name, prev)
		}
		prev = name
		if len(ww.Ops) == 0 {
			return Counter{}, fmt.Errorf("writers[%d] (%q): no ops", i, name)
		}
		for j, op := range ww.Ops {
			if op.Dot == nil || op.Delta == nil {
				return Counter{}, fmt.Errorf("writers[%d].ops[%d]: needs both \"dot\" and \"delta\"", i, j)
			}
			d := Dot(*op.Dot)
			if j > 0 && Dot(*ww.Ops[j-1].Dot).Compare(d) >= 0 {
				return Counter{}, fmt.Errorf("writers[%d].ops[%d]: dot %s not after %s (must be strictly increasing)", i, j, d, Dot(*ww.Ops[j-1].Dot))
			}
			n.put(name, d, *op.Delta)
		}
	}
	return n, nil
}
