package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// The kv tables the writers use.
var kvTables = map[string]kv.Type{"hits": kv.TypeCounter, "users": kv.TypeLWW, "tags": kv.TypeORSet, "profiles": kv.TypeMap}

// kvWorkload is two kv stores, each on its own connection, and a writer
// on each.
type kvWorkload struct {
	stores  []*kv.Store
	writers []*kvWriter
}

type kvWriter struct {
	store    *kv.Store
	seed     uint64
	ok, fail atomic.Int64
}

func startKV(t *testing.T, ctx context.Context, open func() *transport.Log) *kvWorkload {
	t.Helper()
	w := &kvWorkload{}
	for i := range 2 {
		s := openKV(t, ctx, open(), fmt.Sprintf("kv%d", i+1))
		w.stores = append(w.stores, s)
		w.writers = append(w.writers, &kvWriter{store: s, seed: uint64(i + 1)})
	}
	for name, typ := range kvTables {
		if err := poll(ctx, time.Minute, "table "+name, func(ctx context.Context) error {
			_, err := w.stores[0].CreateTable(ctx, name, typ)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func openKV(t *testing.T, ctx context.Context, l *transport.Log, replica string) *kv.Store {
	t.Helper()
	var s *kv.Store
	if err := poll(ctx, time.Minute, "kv store "+replica, func(ctx context.Context) (err error) {
		s, err = kv.Open(ctx, l, kv.Options{Replica: replica, SnapshotEvery: 300, Logger: discardLogger})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// run writes random ops to every table until ctx ends. Failed writes
// (unavailable: the op may have landed) are counted and not retried.
func (w *kvWriter) run(ctx context.Context, pace time.Duration) {
	rng := rand.New(rand.NewPCG(w.seed, 0x6b76))
	paced(ctx, pace, func(n int) {
		key := fmt.Sprintf("k%d", rng.IntN(8))
		octx, cancel := context.WithTimeout(context.Background(), opTimeout)
		var err error
		switch rng.IntN(6) {
		case 0, 1:
			_, err = w.store.Incr(octx, "hits", key, 1+rng.Int64N(3))
		case 2:
			_, err = w.store.Set(octx, "users", key, map[string]any{"writer": w.seed, "n": n})
		case 3:
			_, err = w.store.Add(octx, "tags", key, fmt.Sprintf("t%d", rng.IntN(5)))
		case 4:
			_, err = w.store.Remove(octx, "tags", key, fmt.Sprintf("t%d", rng.IntN(5)))
		default:
			_, err = w.store.SetField(octx, "profiles", key, fmt.Sprintf("f%d", rng.IntN(3)), n)
		}
		cancel()
		if err != nil {
			w.fail.Add(1)
		} else {
			w.ok.Add(1)
		}
	})
}

// kvState is each replica's state after the run.
type kvState struct {
	dumps [][]byte
	seqs  []uint64
	hits  map[string]int64 // the counter table, from the first store
}

// converge syncs the two stores and a third opened after the run (which
// restores a snapshot taken during the faults and folds the rest), and
// returns their states.
func (w *kvWorkload) converge(t *testing.T, ctx context.Context, open func() *transport.Log) kvState {
	t.Helper()
	stores := append(w.stores, openKV(t, ctx, open(), "kv3"))
	var st kvState
	for i, s := range stores {
		if err := poll(ctx, 2*time.Minute, fmt.Sprintf("kv store %d synced", i+1), func(ctx context.Context) error {
			return s.Sync(ctx)
		}); err != nil {
			t.Fatalf("%v (goroutines of the test process: %s)", err, dumpGoroutines())
		}
		dump, seq, err := s.Dump()
		if err != nil {
			t.Fatal(err)
		}
		st.dumps, st.seqs = append(st.dumps, dump), append(st.seqs, seq)
	}
	st.hits = map[string]int64{}
	keys, _, err := stores[0].Keys("hits", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, err := stores[0].Get("hits", k)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := json.Unmarshal(v.Value, &n); err != nil {
			t.Fatalf("counter %s: %s: %v", k, v.Value, err)
		}
		st.hits[k] = n
	}
	return st
}

// check checks that the replicas converged, byte for byte, and that each
// counter equals the sum of the increments that landed in the log.
func (w *kvWorkload) check(t *testing.T, l *landed, st kvState) {
	t.Helper()
	for i := 1; i < len(st.dumps); i++ {
		if !bytes.Equal(st.dumps[i], st.dumps[0]) || st.seqs[i] != st.seqs[0] {
			t.Errorf("kv replica %d (at sequence %d) differs from replica 1 (at %d)", i+1, st.seqs[i], st.seqs[0])
		}
	}
	want := map[string]int64{}
	for _, ev := range l.events {
		if ev.ESK != "kv.hits" {
			continue
		}
		op, err := kv.DecodeOp(ev.Data, ev.ContentType())
		if err != nil {
			t.Errorf("kv.hits#%d: %v", ev.Index, err)
			continue
		}
		d := int64(1)
		if op.Delta != nil {
			d = *op.Delta
		}
		want[op.Key] += d
	}
	if fmt.Sprint(want) != fmt.Sprint(st.hits) {
		t.Errorf("counters %v, the landed increments sum to %v", st.hits, want)
	}
	for i, s := range w.stores {
		for _, tab := range s.Tables() {
			if tab.Rejected > 0 {
				t.Errorf("kv store %d rejected %d ops of %s: %v", i+1, tab.Rejected, tab.Name, s.Rejections(tab.Name))
			}
		}
	}
}

func (w *kvWorkload) ops() int {
	n := 0
	for _, wr := range w.writers {
		n += int(wr.ok.Load() + wr.fail.Load())
	}
	return n
}

func (w *kvWorkload) summary() string {
	var parts []string
	for i, wr := range w.writers {
		parts = append(parts, fmt.Sprintf("writer %d: %d ops ok, %d failed", i+1, wr.ok.Load(), wr.fail.Load()))
	}
	return strings.Join(parts, ", ")
}
