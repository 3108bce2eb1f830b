package crdt

import (
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/big"
	"os"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// The property tests run defaultChecks random cases each. The count can be
// overridden as rapid documents, with -rapid.checks=N on the command line or
// RAPID_CHECKS=N in the environment; with -short rapid runs a fifth of it.
const defaultChecks = 10000

func TestMain(m *testing.M) {
	flag.Parse()
	setDefaultChecks(defaultChecks)
	os.Exit(m.Run())
}

// setDefaultChecks sets rapid's check count to n unless the user chose one.
func setDefaultChecks(n int) {
	if _, ok := os.LookupEnv("RAPID_CHECKS"); ok || flag.Lookup("rapid.checks") == nil {
		return
	}
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "rapid.checks" })
	if !given {
		if err := flag.Set("rapid.checks", strconv.Itoa(n)); err != nil {
			panic(err)
		}
	}
}

// replica is what the properties need of a CRDT state type S with ops O.
type replica[S, O any] interface {
	*S
	Apply(O) error
	Merge(*S)
	Equal(*S) bool
	Clone() *S
	json.Marshaler
	json.Unmarshaler
}

// build applies ops in order to a new state.
func build[S any, P replica[S, O], O any](t *rapid.T, ops []O) P {
	s := P(new(S))
	for _, op := range ops {
		if err := s.Apply(op); err != nil {
			t.Fatalf("Apply(%+v): %v", op, err)
		}
	}
	return s
}

func enc[S any, P replica[S, O], O any](t *rapid.T, s P) string {
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	return string(b)
}

// same fails unless a and b are Equal both ways and encode to equal bytes.
func same[S any, P replica[S, O], O any](t *rapid.T, what string, a, b P) {
	if !a.Equal((*S)(b)) || !b.Equal((*S)(a)) {
		t.Fatalf("%s: states not Equal:\n%s\n%s", what, enc(t, a), enc(t, b))
	}
	if ea, eb := enc(t, a), enc(t, b); ea != eb {
		t.Fatalf("%s: Equal states encode differently:\n%s\n%s", what, ea, eb)
	}
}

func merged[S any, P replica[S, O], O any](a, b P) P {
	c := P(a.Clone())
	c.Merge((*S)(b))
	return c
}

// pick draws a sequence of ops from pool: a random subset in random order,
// possibly with duplicates.
func pick[O any](t *rapid.T, pool []O, label string) []O {
	if len(pool) == 0 {
		return nil
	}
	idx := rapid.SliceOfN(rapid.IntRange(0, len(pool)-1), 0, 2*len(pool)).Draw(t, label)
	out := make([]O, len(idx))
	for i, j := range idx {
		out[i] = pool[j]
	}
	return out
}

// shuffleWithDuplicates draws an ordering of all of pool in which some ops
// appear more than once.
func shuffleWithDuplicates[O any](t *rapid.T, pool []O, label string) []O {
	out := append([]O(nil), pool...)
	out = append(out, pick(t, pool, label+" duplicates")...)
	return rapid.Permutation(out).Draw(t, label)
}

// checkProperties runs the CRDT laws for one type, its ops drawn by gen.
func checkProperties[S any, P replica[S, O], O any](t *testing.T, gen *rapid.Generator[[]O]) {
	t.Parallel()
	law := func(name string, check func(t *rapid.T, pool []O)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, func(t *rapid.T) { check(t, gen.Draw(t, "ops")) })
		})
	}
	law("merge laws", func(t *rapid.T, pool []O) {
		a := build[S, P](t, pick(t, pool, "a"))
		b := build[S, P](t, pick(t, pool, "b"))
		c := build[S, P](t, pick(t, pool, "c"))
		encA, encB := enc(t, a), enc(t, b)

		same(t, "commutative", merged(a, b), merged(b, a))
		same(t, "associative", merged(merged(a, b), c), merged(a, merged(b, c)))
		same(t, "idempotent", merged(a, a), a)
		ab := merged(a, b)
		same(t, "idempotent after merge", merged(ab, b), ab)
		same(t, "clone", P(a.Clone()), a)
		if enc(t, a) != encA || enc(t, b) != encB {
			t.Fatalf("Merge modified its argument")
		}
		// Changing a source after a merge must not change the result.
		encAB := enc(t, ab)
		for _, op := range pool {
			if err := b.Apply(op); err != nil {
				t.Fatal(err)
			}
		}
		if enc(t, ab) != encAB {
			t.Fatalf("merged state shares memory with its source")
		}

		// Encoding round trip.
		d := P(new(S))
		if err := d.UnmarshalJSON([]byte(encAB)); err != nil {
			t.Fatalf("UnmarshalJSON(%s): %v", encAB, err)
		}
		same(t, "round trip", d, ab)
	})
	law("convergence", func(t *rapid.T, pool []O) {
		r1 := build[S, P](t, shuffleWithDuplicates(t, pool, "order 1"))
		r2 := build[S, P](t, shuffleWithDuplicates(t, pool, "order 2"))
		r3 := build[S, P](t, shuffleWithDuplicates(t, pool, "order 3"))
		same(t, "replicas 1 and 2", r1, r2)
		same(t, "replicas 1 and 3", r1, r3)
		if len(pool) > 0 {
			op := rapid.SampledFrom(pool).Draw(t, "re-applied op")
			again := P(r1.Clone())
			if err := again.Apply(op); err != nil {
				t.Fatal(err)
			}
			same(t, "Apply idempotent", again, r1)
		}
	})
	law("apply equals merge of parts", func(t *rapid.T, pool []O) {
		whole := build[S, P](t, pool)
		parts := rapid.IntRange(1, 4).Draw(t, "parts")
		split := make([][]O, parts)
		for i, op := range pool {
			p := rapid.IntRange(0, parts-1).Draw(t, "part of op "+strconv.Itoa(i))
			split[p] = append(split[p], op)
		}
		acc := P(new(S))
		for _, p := range rapid.Permutation(split).Draw(t, "merge order") {
			acc.Merge((*S)(build[S, P](t, p)))
		}
		same(t, "merged parts", acc, whole)
	})
}

// Generators. Small alphabets make collisions (equal timestamps, the same
// element, key or writer) frequent.

var (
	genValue  = rapid.SampledFrom([]string{`1`, `"x"`, `null`, `{"a":[1,2]}`, ` { "b" : "<&>" } `, "\"\u2028\""})
	genName   = rapid.SampledFrom([]string{"x", "y", "z"})
	genWriter = rapid.SampledFrom([]string{"w1", "w2"})
	genDelta  = rapid.OneOf(rapid.Int64Range(-3, 3), rapid.SampledFrom([]int64{math.MaxInt64, math.MinInt64, math.MaxInt64 - 1}))
	genStamp  = rapid.Custom(func(t *rapid.T) [2]int {
		return [2]int{rapid.IntRange(0, 3).Draw(t, "wall"), rapid.IntRange(0, 1).Draw(t, "logical")}
	})
	genOpCount = rapid.IntRange(0, 8)
)

// drawDots draws n op identities. Usually they are unique, as in a log (each
// ESK's indices counting up); sometimes they are drawn from a small space so
// that a Dot is reused by different ops, which the types must also resolve
// deterministically.
func drawDots(t *rapid.T, n int) []Dot {
	unique := rapid.IntRange(0, 3).Draw(t, "dot mode") > 0
	next := map[string]uint64{}
	dots := make([]Dot, n)
	for i := range dots {
		esk := rapid.SampledFrom([]string{"a", "b", "a.b"}).Draw(t, "esk")
		if unique {
			dots[i] = Dot{ESK: esk, Index: next[esk]}
			next[esk]++
		} else {
			dots[i] = Dot{ESK: esk, Index: rapid.Uint64Range(0, 2).Draw(t, "index")}
		}
	}
	return dots
}

// drawSeen draws the Dots an op had seen: some of those before it, and
// rarely one of a later op.
func drawSeen(t *rapid.T, dots []Dot, i int) []Dot {
	var seen []Dot
	for _, d := range dots[:i] {
		if rapid.IntRange(0, 2).Draw(t, "seen") == 0 {
			seen = append(seen, d)
		}
	}
	if i+1 < len(dots) && rapid.IntRange(0, 9).Draw(t, "sees a later op") == 0 {
		seen = append(seen, dots[rapid.IntRange(i+1, len(dots)-1).Draw(t, "later op")])
	}
	return seen
}

func genOps[O any](op func(t *rapid.T, dots []Dot, i int) O) *rapid.Generator[[]O] {
	return rapid.Custom(func(t *rapid.T) []O {
		dots := drawDots(t, genOpCount.Draw(t, "n"))
		ops := make([]O, len(dots))
		for i := range ops {
			ops[i] = op(t, dots, i)
		}
		return ops
	})
}

func drawStamp(t *rapid.T) (w int64, l uint32) {
	s := genStamp.Draw(t, "ts")
	return int64(s[0]), uint32(s[1])
}

func TestLWWProperties(t *testing.T) {
	checkProperties[LWW, *LWW](t, genOps(func(t *rapid.T, dots []Dot, i int) LWWOp {
		w, l := drawStamp(t)
		op := LWWOp{Dot: dots[i], TS: ts(w, l), Delete: rapid.IntRange(0, 3).Draw(t, "delete") == 0}
		if !op.Delete {
			op.Value = raw(genValue.Draw(t, "value"))
		}
		return op
	}))
}

func TestORSetProperties(t *testing.T) {
	checkProperties[ORSet, *ORSet](t, genOps(func(t *rapid.T, dots []Dot, i int) ORSetOp {
		op := ORSetOp{Dot: dots[i], Element: genName.Draw(t, "element"), Remove: rapid.IntRange(0, 2).Draw(t, "remove") == 0}
		if op.Remove {
			op.Observed = drawSeen(t, dots, i)
		}
		return op
	}))
}

var genCounterOps = genOps(func(t *rapid.T, dots []Dot, i int) CounterOp {
	return CounterOp{Dot: dots[i], Writer: genWriter.Draw(t, "writer"), Delta: genDelta.Draw(t, "delta")}
})

func TestCounterProperties(t *testing.T) {
	checkProperties[Counter, *Counter](t, genCounterOps)
}

// TestCounterTotal checks the total a counter keeps against the sum of
// the ops it holds, however the state was reached.
func TestCounterTotal(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		pool := genCounterOps.Draw(t, "ops")
		a := build[Counter](t, pick(t, pool, "a"))
		b := build[Counter](t, pick(t, pool, "b"))
		ab := merged(a, b)
		var decoded Counter
		if err := decoded.UnmarshalJSON([]byte(enc(t, ab))); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*Counter{a, b, ab, &decoded} {
			sum := new(big.Int)
			for _, ops := range c.writers {
				for _, delta := range ops {
					sum.Add(sum, big.NewInt(delta))
				}
			}
			want, overflow := sum.Int64(), !sum.IsInt64()
			if overflow {
				want = math.MaxInt64
				if sum.Sign() < 0 {
					want = math.MinInt64
				}
			}
			if got, err := c.Exact(); got != want || errors.Is(err, ErrOverflow) != overflow {
				t.Fatalf("Exact = %d, %v; the ops sum to %s", got, err, sum)
			}
		}
	})
}

func TestMVRegProperties(t *testing.T) {
	checkProperties[MVReg, *MVReg](t, genOps(func(t *rapid.T, dots []Dot, i int) MVRegOp {
		return MVRegOp{Dot: dots[i], Value: raw(genValue.Draw(t, "value")), Context: drawSeen(t, dots, i)}
	}))
}

func TestMapProperties(t *testing.T) {
	checkProperties[Map, *Map](t, genOps(func(t *rapid.T, dots []Dot, i int) MapOp {
		op := MapOp{Kind: rapid.SampledFrom([]MapOpKind{MapSet, MapAdd, MapRemove}).Draw(t, "kind"), Key: genName.Draw(t, "key"), Dot: dots[i]}
		switch op.Kind {
		case MapSet:
			w, l := drawStamp(t)
			op.TS, op.Value = ts(w, l), raw(genValue.Draw(t, "value"))
		case MapAdd:
			op.Writer, op.Delta = genWriter.Draw(t, "writer"), genDelta.Draw(t, "delta")
		case MapRemove:
			op.Observed = drawSeen(t, dots, i)
		}
		return op
	}))
}
