package transport

import (
	"container/list"
	"hash/maphash"
	"slices"
	"sync"
)

// A fact says that the event at index Index of an ESK is stored at stream
// sequence Seq. The stream denies delete, purge and rollup, so a fact once
// true stays true: facts are learned once and kept as long as they are
// useful, whoever learned them.
type fact struct {
	index, seq uint64
}

// Bounds of what a Log remembers about ESKs.
const (
	// maxFactsPerESK bounds the facts kept per ESK: the newest known
	// (the tail) and others found by reads, the lowest index dropped
	// first.
	maxFactsPerESK = 32
	// maxESKs bounds the ESKs a Log keeps facts about; the least
	// recently used one is forgotten first.
	maxESKs = 4096
)

// eskFacts is what a Log knows of one ESK: a few facts, sorted by index.
// Its last fact is the tail: the highest index known, which a writer
// that appends after it can extend with [eskFacts.link].
type eskFacts struct {
	subject string

	mu    sync.Mutex
	facts []fact // sorted by index (and so by seq), at most maxFactsPerESK
	hint  fact   // where this log's last run may have ended: not a fact (see AppendRun)
}

// runHint returns where this log's last run to the ESK may have ended.
func (e *eskFacts) runHint() (fact, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hint, e.hint.seq > 0
}

func (e *eskFacts) setRunHint(f fact) {
	e.mu.Lock()
	e.hint = f
	e.mu.Unlock()
}

// tail returns the fact with the highest known index.
func (e *eskFacts) tail() (fact, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.facts) == 0 {
		return fact{}, false
	}
	return e.facts[len(e.facts)-1], true
}

// seqOf returns the stream sequence of index i if it is known.
func (e *eskFacts) seqOf(i uint64) (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := slices.BinarySearchFunc(e.facts, i, func(f fact, i uint64) int { return cmpU64(f.index, i) })
	if !ok {
		return 0, false
	}
	return e.facts[j].seq, true
}

// indexOf returns the index of the event at stream sequence seq if it is
// known.
func (e *eskFacts) indexOf(seq uint64) (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := slices.BinarySearchFunc(e.facts, seq, func(f fact, s uint64) int { return cmpU64(f.seq, s) })
	if !ok {
		return 0, false
	}
	return e.facts[j].index, true
}

// below returns the known fact with the highest sequence under seq.
func (e *eskFacts) below(seq uint64) (fact, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, _ := slices.BinarySearchFunc(e.facts, seq, func(f fact, s uint64) int { return cmpU64(f.seq, s) })
	if j == 0 {
		return fact{}, false
	}
	return e.facts[j-1], true
}

// around returns the nearest known facts at or below and at or above
// index i (ok false for a side with none).
func (e *eskFacts) around(i uint64) (lo fact, loOK bool, hi fact, hiOK bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, found := slices.BinarySearchFunc(e.facts, i, func(f fact, i uint64) int { return cmpU64(f.index, i) })
	if found {
		return e.facts[j], true, e.facts[j], true
	}
	if j > 0 {
		lo, loOK = e.facts[j-1], true
	}
	if j < len(e.facts) {
		hi, hiOK = e.facts[j], true
	}
	return
}

// add records a fact.
func (e *eskFacts) add(f fact) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.addLocked(f)
}

func (e *eskFacts) addLocked(f fact) {
	j, found := slices.BinarySearchFunc(e.facts, f.index, func(x fact, i uint64) int { return cmpU64(x.index, i) })
	if found {
		return
	}
	if len(e.facts) >= maxFactsPerESK {
		if j == 0 {
			return // lower than everything kept: the least useful
		}
		copy(e.facts, e.facts[1:j]) // drop the lowest, shift into place
		e.facts[j-1] = f
		return
	}
	e.facts = slices.Insert(e.facts, j, f)
}

// link records that the event stored at seq directly follows the one at
// prev on this ESK (prev 0: it is the ESK's first event), as a
// conditional append or an ordered consumer proves. It extends the tail
// in place when prev is the tail, so that a writer or reader following
// the ESK keeps a constant number of facts; otherwise it adds a fact when
// prev is known.
func (e *eskFacts) link(prev, seq uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if prev == 0 {
		e.addLocked(fact{0, seq})
		return
	}
	n := len(e.facts)
	if n == 0 {
		return
	}
	t := e.facts[n-1]
	switch {
	case t.seq == prev && seq > prev:
		e.facts[n-1] = fact{t.index + 1, seq} // move the tail: constant memory while following
	default:
		if i, ok := e.indexOfLocked(prev); ok {
			e.addLocked(fact{i + 1, seq})
		}
	}
}

// advance records fact to, later on the ESK than from: it replaces from
// when from is still the tail, so that a writer or reader following the
// ESK keeps a constant number of facts.
func (e *eskFacts) advance(from, to fact) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.facts); n > 0 && e.facts[n-1] == from && to.index > from.index {
		e.facts[n-1] = to
		return
	}
	e.addLocked(to)
}

func (e *eskFacts) indexOfLocked(seq uint64) (uint64, bool) {
	j, ok := slices.BinarySearchFunc(e.facts, seq, func(f fact, s uint64) int { return cmpU64(f.seq, s) })
	if !ok {
		return 0, false
	}
	return e.facts[j].index, true
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// factCache holds the facts of at most maxESKs ESKs, forgetting the least
// recently used.
type factCache struct {
	prefix string

	mu    sync.Mutex
	byESK map[string]*list.Element // of *eskFacts
	lru   list.List                // front: most recently used
}

func newFactCache(prefix string) *factCache {
	return &factCache{prefix: prefix, byESK: map[string]*list.Element{}}
}

// get returns the facts of esk, made empty if none are held.
func (c *factCache) get(esk string) *eskFacts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.byESK[esk]; el != nil {
		c.lru.MoveToFront(el)
		return el.Value.(*eskFacts)
	}
	e := &eskFacts{subject: c.prefix + "." + esk}
	c.byESK[esk] = c.lru.PushFront(e)
	if c.lru.Len() > maxESKs {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byESK, old.Value.(*eskFacts).subject[len(c.prefix)+1:])
	}
	return e
}

// len returns how many ESKs have facts held.
func (c *factCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// lru is a map bounded to its n most recently used keys.
type lru[V any] struct {
	n     int
	byKey map[string]*list.Element
	order list.List // of *lruEntry[V], front: most recent
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](n int) *lru[V] { return &lru[V]{n: n, byKey: map[string]*list.Element{}} }

func (c *lru[V]) get(k string) (V, bool) {
	if el := c.byKey[k]; el != nil {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) put(k string, v V) {
	if el := c.byKey[k]; el != nil {
		el.Value.(*lruEntry[V]).val = v
		c.order.MoveToFront(el)
		return
	}
	c.byKey[k] = c.order.PushFront(&lruEntry[V]{k, v})
	if c.order.Len() > c.n {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.byKey, old.Value.(*lruEntry[V]).key)
	}
}

// seenSet remembers, in a fixed 1 MiB, which keys were added: "no" is
// certain, "yes" is right but for a small chance (under 0.01% for 200,000
// keys, 2.5% for a million). A stream from the log's start uses it to
// know an ESK's first event without a lookup; a false "yes" costs a
// lookup, never a wrong index.
type seenSet struct {
	bits []uint64
	seed maphash.Seed
}

const seenBits = 8 << 20

func newSeenSet() *seenSet {
	return &seenSet{bits: make([]uint64, seenBits/64), seed: maphash.MakeSeed()}
}

func (s *seenSet) probes(k string) [4]uint32 {
	h := maphash.String(s.seed, k)
	h1, h2 := uint32(h), uint32(h>>32)|1
	var out [4]uint32
	for i := range out {
		out[i] = (h1 + uint32(i)*h2) % seenBits
	}
	return out
}

func (s *seenSet) add(k string) {
	for _, b := range s.probes(k) {
		s.bits[b/64] |= 1 << (b % 64)
	}
}

func (s *seenSet) has(k string) bool {
	for _, b := range s.probes(k) {
		if s.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}
