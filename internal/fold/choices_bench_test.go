package fold

// Benchmarks of the machinery's choices, each beside the alternative one
// of the clients used before they shared it:
//
//	go test -run '^$' -bench 'Outcomes|Waiters|Hold' ./internal/fold/

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/transport"
)

// BenchmarkOutcomes keeps an outcome per event and finds the one of an
// event applied a little before, as a writer does: in the ring (ours)
// and in a map with a ring of its keys (the task client's before).
func BenchmarkOutcomes(b *testing.B) {
	const keep = 16384
	type outcome struct {
		kind string
		n    uint64
	}
	b.Run("ring", func(b *testing.B) {
		r := newOutcomes[outcome](keep)
		b.ReportAllocs()
		for i := range b.N {
			seq := uint64(2*i + 1) // other events between
			r.add(seq, outcome{"done", seq})
			if _, ok := r.get(seq - 20); !ok && i > 10 {
				b.Fatal("not kept")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		m := map[uint64]outcome{}
		ring := make([]uint64, 0, keep)
		next := 0
		b.ReportAllocs()
		for i := range b.N {
			seq := uint64(2*i + 1)
			if len(ring) < keep {
				ring = append(ring, seq)
			} else {
				delete(m, ring[next])
				ring[next] = seq
				next = (next + 1) % keep
			}
			m[seq] = outcome{"done", seq}
			if _, ok := m[seq-20]; !ok && i > 10 {
				b.Fatal("not kept")
			}
		}
	})
}

// BenchmarkWaiters: w waits pending at positions ahead, the fold
// advancing one position at a time and releasing those due, each
// released wait replaced by one further on: the heap (ours, the task
// client's before) and a slice scanned at every advance (kv's before).
func BenchmarkWaiters(b *testing.B) {
	for _, w := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("heap/waiters=%d", w), func(b *testing.B) {
			var c cursor
			for i := range w {
				heap.Push(&c.waiters, &waiter{seq: uint64(i + 1), ch: make(chan struct{})})
				c.nwait.Add(1)
			}
			b.ResetTimer()
			for i := range b.N {
				seq := uint64(i + 1)
				c.advance(seq)
				c.mu.Lock()
				heap.Push(&c.waiters, &waiter{seq: seq + uint64(w), ch: make(chan struct{})})
				c.nwait.Add(1)
				c.mu.Unlock()
			}
		})
		b.Run(fmt.Sprintf("slice/waiters=%d", w), func(b *testing.B) {
			type sw struct {
				seq uint64
				ch  chan struct{}
			}
			var mu sync.Mutex
			var waiters []*sw
			for i := range w {
				waiters = append(waiters, &sw{uint64(i + 1), make(chan struct{})})
			}
			b.ResetTimer()
			for i := range b.N {
				seq := uint64(i + 1)
				mu.Lock()
				kept := waiters[:0]
				for _, x := range waiters {
					if x.seq <= seq {
						close(x.ch)
					} else {
						kept = append(kept, x)
					}
				}
				clear(waiters[len(kept):])
				waiters = append(kept, &sw{seq + uint64(w), make(chan struct{})})
				mu.Unlock()
			}
		})
	}
}

// BenchmarkHold applies batches of events with a reader taking the read
// lock all along, holding the write lock for one event at a time (the
// task client's before) or for up to MaxHold (ours, kv's before).
func BenchmarkHold(b *testing.B) {
	evs := make([]transport.Event, 1024)
	for _, hold := range []int{1, 8, MaxHold, 256} {
		b.Run(fmt.Sprintf("hold=%d", hold), func(b *testing.B) {
			var mu sync.RWMutex
			state := map[uint64]uint64{}
			f, err := New(Config[int]{Name: "bench", Sources: []Source{nopSource{}}, Mu: &mu, KeepOutcomes: 4096,
				Apply: func(_ int, ev *transport.Event) int { state[ev.Seq%1000]++; return 0 }})
			if err != nil {
				b.Fatal(err)
			}
			f.hold = hold
			ctx, stop := context.WithCancel(context.Background())
			var readers sync.WaitGroup
			var reads int
			readers.Go(func() {
				for ctx.Err() == nil {
					mu.RLock()
					_ = state[1]
					mu.RUnlock()
					reads++
				}
			})
			seq := uint64(0)
			start := time.Now()
			b.ResetTimer()
			for n := 0; n < b.N; n += len(evs) {
				for i := range evs {
					seq++
					evs[i].Seq = seq
				}
				f.apply(0, evs)
			}
			b.StopTimer()
			stop()
			readers.Wait()
			b.ReportMetric(float64(reads)/time.Since(start).Seconds(), "reads/s")
		})
	}
}

// nopSource is a source with nothing to read.
type nopSource struct{}

func (nopSource) Name() string { return "nothing" }
func (nopSource) Read(ctx context.Context, _ uint64, _ func([]transport.Event) error) error {
	<-ctx.Done()
	return nil
}
func (nopSource) Last(context.Context) (uint64, error) { return 0, nil }
