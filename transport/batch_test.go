package transport_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

func payloads(tag string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"tag":%q,"i":%d}`, tag, i)
	}
	return out
}

// TestAppendBatch: a batch lands whole, at consecutive indices and
// contiguous stream sequences, and only at the ESK's count.
func TestAppendBatch(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	r, err := l.AppendBatch(ctx, "b.x", 0, payloads("a", 3))
	if err != nil || r.Outcome != transport.Written || r.First.Index != 0 {
		t.Fatalf("first batch: %+v %v", r, err)
	}
	if _, err := l.Write(ctx, "b.other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	r2, err := l.AppendBatch(ctx, "b.x", 3, payloads("b", 4))
	if err != nil || r2.Outcome != transport.Written || r2.First.Index != 3 {
		t.Fatalf("second batch: %+v %v", r2, err)
	}
	fresh := testnats.Log(t, s.ClientURL(), transport.Config{})
	for i, want := range append(payloads("a", 3), payloads("b", 4)...) {
		ev, err := fresh.Get(ctx, "b.x", uint64(i))
		if err != nil || !bytes.Equal(ev.Data, want) {
			t.Fatalf("index %d: %s %v", i, ev.Data, err)
		}
		if i < 3 && ev.Seq != r.First.Seq+uint64(i) {
			t.Fatalf("index %d at seq %d: not contiguous from %d", i, ev.Seq, r.First.Seq)
		}
	}
	for i := range 4 {
		if ev, _ := fresh.Get(ctx, "b.x", uint64(3+i)); ev.Seq != r2.First.Seq+uint64(i) {
			t.Fatalf("index %d at seq %d, want %d", 3+i, ev.Seq, r2.First.Seq+uint64(i))
		}
	}
	// At a taken index: nothing written.
	if r, err := fresh.AppendBatch(ctx, "b.x", 2, payloads("c", 2)); err != nil || r.Outcome != transport.Present {
		t.Fatalf("batch at a taken index: %+v %v", r, err)
	}
	if _, err := fresh.AppendBatch(ctx, "b.x", 9, payloads("c", 2)); !errors.Is(err, transport.ErrIndexAhead) {
		t.Fatalf("batch ahead: %v", err)
	}
	if n, _ := fresh.Count(ctx, "b.x"); n != 7 {
		t.Fatalf("b.x holds %d events, want 7", n)
	}
}

// TestAppendBatchLimits: the 1,000-event limit, and bad events refused
// before anything is written.
func TestAppendBatchLimits(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	if r, err := l.AppendBatch(ctx, "lim.x", 0, payloads("full", transport.MaxBatch)); err != nil || r.Outcome != transport.Written {
		t.Fatalf("a batch of %d: %+v %v", transport.MaxBatch, r, err)
	}
	if _, err := l.AppendBatch(ctx, "lim.x", transport.MaxBatch, payloads("over", transport.MaxBatch+1)); !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("a batch of %d: %v", transport.MaxBatch+1, err)
	}
	big := payloads("big", 3)
	big[2] = bytes.Repeat([]byte("x"), transport.DefaultMaxPayload+1)
	if _, err := l.AppendBatch(ctx, "lim.x", transport.MaxBatch, big); !errors.Is(err, transport.ErrPayloadTooLarge) {
		t.Fatalf("a batch with an oversized event: %v", err)
	}
	if _, err := l.AppendBatch(ctx, "lim..x", 0, payloads("bad", 1)); !errors.Is(err, transport.ErrInvalidESK) {
		t.Fatalf("a batch to a bad ESK: %v", err)
	}
	// Events of up to 256 KiB, a batch of 16 MiB in all.
	heavy := make([][]byte, 64)
	for i := range heavy {
		heavy[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 256<<10)
	}
	if r, err := l.AppendBatch(ctx, "lim.y", 0, heavy); err != nil || r.Outcome != transport.Written {
		t.Fatalf("a 16 MiB batch: %+v %v", r, err)
	}
	if n, _ := l.Count(ctx, "lim.x"); n != transport.MaxBatch {
		t.Fatalf("lim.x holds %d events", n)
	}
}

// TestAppendBatchRace: writers race batches of different content at the
// same indices; for every index range exactly one batch lands whole, and
// the losers are told Present with nothing of theirs stored.
func TestAppendBatchRace(t *testing.T) {
	for name, url := range map[string]func(t *testing.T) string{
		"single node":           func(t *testing.T) string { return testnats.Node(t).ClientURL() },
		"three-node cluster R3": func(t *testing.T) string { return testnats.URLs(testnats.Cluster(t, 3)) },
	} {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			cfg := transport.Config{}
			if name != "single node" {
				cfg.Replicas = 3
			}
			ctx := ctxT(t)
			const writers, rounds, size = 4, 20, 5
			var mu sync.Mutex
			won := map[uint64]int{}
			var wg sync.WaitGroup
			for w := range writers {
				l := testnats.Log(t, u, cfg)
				wg.Go(func() {
					for r := range rounds {
						idx := uint64(r * size)
						res, err := l.AppendBatch(ctx, "race.b", idx, payloads(fmt.Sprint("w", w), size))
						if err != nil {
							t.Errorf("writer %d at %d: %v", w, idx, err)
							return
						}
						if res.Outcome == transport.Written {
							mu.Lock()
							won[idx] = w + 1
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			l := testnats.Log(t, u, cfg)
			for r := range rounds {
				idx := uint64(r * size)
				w := won[idx]
				if w == 0 {
					t.Fatalf("no writer was told Written at %d", idx)
				}
				for i := range size {
					ev, err := l.Get(ctx, "race.b", idx+uint64(i))
					if err != nil || !bytes.Equal(ev.Data, payloads(fmt.Sprint("w", w-1), size)[i]) {
						t.Fatalf("index %d: %s (%v), want writer %d's", idx+uint64(i), ev.Data, err, w-1)
					}
				}
			}
			if n, _ := l.Count(ctx, "race.b"); n != rounds*size {
				t.Fatalf("race.b holds %d events, want %d", n, rounds*size)
			}
		})
	}
}
