package transport_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"
)

// TestIndicesFromCountsMatchWalk: on random interleavings of writes to
// several ESKs, by the SDK's writes and conditional appends, plain
// JetStream publishes without headers and the nats CLI, indices that a
// fresh client learns from server counts equal those found by walking.
func TestIndicesFromCountsMatchWalk(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	w := testnats.Log(t, url, transport.Config{})
	nc := testnats.Conn(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cli := ""
	if !testing.Short() {
		cli = testnats.NatsCLI(t)
	}
	var run atomic.Int64
	rapid.Check(t, func(rt *rapid.T) {
		ns := fmt.Sprintf("prop%d", run.Add(1))
		nESK := rapid.IntRange(1, 5).Draw(rt, "esks")
		ops := rapid.IntRange(1, 120).Draw(rt, "ops")
		ctx := context.Background()
		counts := make([]uint64, nESK)
		withCLI := cli != "" && rapid.IntRange(0, 9).Draw(rt, "cli") == 0
		for k := range ops {
			e := rapid.IntRange(0, nESK-1).Draw(rt, "esk")
			esk := fmt.Sprintf("%s.e%d", ns, e)
			body := []byte(fmt.Sprintf(`{"op":%d}`, k))
			switch kind := rapid.IntRange(0, 5).Draw(rt, "kind"); {
			case kind == 0:
				pos, err := w.Write(ctx, esk, body)
				if err != nil || pos.Index != counts[e] {
					rt.Fatalf("Write(%s) = %+v, %v; want index %d", esk, pos, err, counts[e])
				}
			case kind == 1:
				if _, err := w.Publish(ctx, esk, body); err != nil {
					rt.Fatal(err)
				}
			case kind == 2:
				r, err := w.ExistsOrWrite(ctx, esk, counts[e], body)
				if err != nil || r.Outcome != transport.Written {
					rt.Fatalf("ExistsOrWrite(%s, %d) = %+v, %v", esk, counts[e], r, err)
				}
			case kind == 3 && withCLI:
				testnats.NatsPub(t, ctx, cli, url, "events."+esk, string(body), true)
			default: // a plain JetStream publish, no headers
				if _, err := js.Publish(ctx, "events."+esk, body); err != nil {
					rt.Fatal(err)
				}
			}
			counts[e]++
		}
		truth := testnats.WalkTruth(rt, url, ns)
		for e, n := range counts {
			if got := len(truth[fmt.Sprintf("%s.e%d", ns, e)]); uint64(got) != n {
				rt.Fatalf("the walk finds %d events of e%d, %d were written", got, e, n)
			}
		}
		testnats.CheckIndices(rt, url, transport.Config{}, ns, truth, rand.New(rand.NewPCG(uint64(ops), uint64(nESK))))
	})
}

// TestIndicesFromCountsReplicated: on a three-node cluster with the log at
// R3, writers append to a few ESKs while fresh clients read them by index
// (so readings go to every replica, traced and paired by server), and the
// stream leader is shut down mid-run. Every index a write returned and
// every read answered equals the walk's.
func TestIndicesFromCountsReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and waits for a leader election")
	}
	servers := testnats.Cluster(t, 3)
	urls := testnats.URLs(servers)
	cfg := transport.Config{Replicas: 3}
	const ns = "repl"
	esks := []string{ns + ".a", ns + ".b", ns + ".c"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type written struct {
		esk        string
		index, seq uint64
	}
	var mu sync.Mutex
	var writes []written // acknowledged, with the index the writer was told
	var reads []written  // answered by fresh readers
	var wg sync.WaitGroup
	for wi := range 3 {
		l := testnats.Log(t, urls, cfg)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wi), 1))
			for k := 0; ctx.Err() == nil; k++ {
				esk := esks[rng.IntN(len(esks))]
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				pos, err := l.Write(wctx, esk, fmt.Appendf(nil, `{"w":%d,"k":%d}`, wi, k))
				wcancel()
				if err == nil {
					mu.Lock()
					writes = append(writes, written{esk, pos.Index, pos.Seq})
					mu.Unlock()
				}
			}
		})
	}
	for ri := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(ri), 2))
			for ctx.Err() == nil {
				l, err := transport.Connect(ctx, urls, cfg)
				if err != nil {
					continue
				}
				esk := esks[rng.IntN(len(esks))]
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				if n, err := l.Count(rctx, esk); err == nil && n > 0 {
					i := rng.Uint64N(n)
					if ev, err := l.Get(rctx, esk, i); err == nil {
						mu.Lock()
						reads = append(reads, written{esk, i, ev.Seq})
						mu.Unlock()
					}
				}
				rcancel()
				l.Close()
			}
		})
	}
	// Let the writers run, then shut the stream leader down, then run on.
	waitWrites := func(n int) {
		testnats.WaitFor(t, time.Minute, fmt.Sprintf("%d acknowledged writes", n), func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(writes) < n {
				return fmt.Errorf("%d so far", len(writes))
			}
			return nil
		})
	}
	waitWrites(300)
	l := testnats.Log(t, urls, cfg)
	st, err := l.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var survivors []*transport.Server
	for _, s := range servers {
		if s.NATS().Name() == st.Leader {
			s.Shutdown()
			t.Logf("shut down the stream leader %s", st.Leader)
		} else {
			survivors = append(survivors, s)
		}
	}
	mu.Lock()
	n := len(writes)
	mu.Unlock()
	waitWrites(n + 300)
	cancel()
	wg.Wait()

	url := testnats.URLs(survivors)
	truth := testnats.WalkTruth(t, url, ns)
	for _, w := range writes {
		if seqs := truth[w.esk]; int(w.index) >= len(seqs) || seqs[w.index] != w.seq {
			t.Fatalf("a write was told %s@%d at seq %d; the walk disagrees", w.esk, w.index, w.seq)
		}
	}
	for _, r := range reads {
		if seqs := truth[r.esk]; int(r.index) >= len(seqs) || seqs[r.index] != r.seq {
			t.Fatalf("a read of %s@%d answered seq %d; the walk disagrees", r.esk, r.index, r.seq)
		}
	}
	t.Logf("%d writes and %d fresh reads agree with the walk", len(writes), len(reads))
	testnats.CheckIndices(t, url, cfg, ns, truth, rand.New(rand.NewPCG(3, 4)))
}
