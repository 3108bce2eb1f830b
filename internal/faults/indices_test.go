package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestIndicesUnderLeaderKill: on a three-node cluster of detbus processes
// with the log at R3, writers append to a few ESKs while fresh clients
// read them by index (their readings of pending counts go to every
// replica, traced and paired by server), the stream leader is SIGKILLed
// twice and restarted, and a follower is paused and resumed, so that it
// answers from behind while it catches up. Every index a write returned and every
// read answered equals the one found by walking the stream afterwards,
// and a fresh client's indices from counts equal the walk's everywhere.
func TestIndicesUnderLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of processes through leader kills")
	}
	c := StartCluster(t, detbusBinary(t), "indices", 3)
	urls := c.ClientURLs()
	cfg := transport.Config{}
	connect := func(ctx context.Context) (*transport.Log, error) {
		return transport.Connect(ctx, urls, cfg, ClientOptions()...)
	}
	const ns = "idx"
	esks := []string{ns + ".a", ns + ".b", ns + ".c"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type fact struct {
		esk        string
		index, seq uint64
	}
	var mu sync.Mutex
	var writes, reads []fact
	var writeErrs []error
	count := func(xs *[]fact) int {
		mu.Lock()
		defer mu.Unlock()
		return len(*xs)
	}
	var wg sync.WaitGroup
	for wi := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wi), 1))
			var l *transport.Log
			for k := 0; ctx.Err() == nil; k++ {
				if l == nil {
					var err error
					if l, err = connect(ctx); err != nil {
						continue
					}
					defer l.Close()
				}
				esk := esks[rng.IntN(len(esks))]
				wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
				var pos transport.Position
				var err error
				if k%2 == 0 {
					pos, err = l.Write(wctx, esk, fmt.Appendf(nil, `{"w":%d,"k":%d}`, wi, k))
				} else {
					var n uint64
					if n, err = l.Count(wctx, esk); err == nil {
						var r transport.AppendResult
						if r, err = l.ExistsOrWrite(wctx, esk, n, fmt.Appendf(nil, `{"w":%d,"k":%d}`, wi, k)); err == nil {
							pos = r.Position
						}
					}
				}
				wcancel()
				switch {
				case err == nil:
					mu.Lock()
					writes = append(writes, fact{esk, pos.Index, pos.Seq})
					mu.Unlock()
				case !errors.Is(err, transport.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
					// Only NATS failing to answer in time is an excuse.
					mu.Lock()
					writeErrs = append(writeErrs, err)
					mu.Unlock()
				}
			}
		})
	}
	for ri := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(ri), 2))
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				l, err := connect(rctx)
				if err == nil {
					esk := esks[rng.IntN(len(esks))]
					if n, err := l.Count(rctx, esk); err == nil && n > 0 {
						i := rng.Uint64N(n)
						if ev, err := l.Get(rctx, esk, i); err == nil {
							mu.Lock()
							reads = append(reads, fact{esk, i, ev.Seq})
							mu.Unlock()
						}
					}
					l.Close()
				}
				rcancel()
			}
		})
	}
	waitFor := func(xs *[]fact, n int) {
		testnats.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d more", n), func() error {
			if got := count(xs); got < n {
				return fmt.Errorf("%d so far", got)
			}
			return nil
		})
	}
	admin, err := connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for kill := range 2 {
		waitFor(&writes, count(&writes)+300)
		waitFor(&reads, count(&reads)+30)
		var leader string
		testnats.WaitFor(t, time.Minute, "a stream leader", func() error {
			st, err := admin.State(ctx, "")
			if err == nil && st.Leader == "" {
				err = fmt.Errorf("none")
			}
			leader = st.Leader
			return err
		})
		node := c.Node(leader)
		node.Kill()
		t.Logf("kill %d: SIGKILLed the stream leader %s with %d writes and %d reads so far", kill+1, leader, count(&writes), count(&reads))
		waitFor(&writes, count(&writes)+200)
		if err := node.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// A follower paused and resumed serves direct gets from behind while it
	// catches up: readings it answers must not be taken for the log's.
	var follower *Node
	testnats.WaitFor(t, time.Minute, "a stream leader", func() error {
		st, err := admin.State(ctx, "")
		if err != nil || st.Leader == "" {
			return fmt.Errorf("no leader: %v", err)
		}
		for _, n := range c.Nodes {
			if n.Name != st.Leader {
				follower = n
			}
		}
		return nil
	})
	if err := follower.Pause(); err != nil {
		t.Fatal(err)
	}
	waitFor(&writes, count(&writes)+300)
	if err := follower.Resume(); err != nil {
		t.Fatal(err)
	}
	t.Logf("paused and resumed the follower %s", follower.Name)
	waitFor(&writes, count(&writes)+300)
	waitFor(&reads, count(&reads)+30)
	cancel()
	wg.Wait()

	for _, err := range writeErrs {
		t.Errorf("a write failed: %v", err)
	}
	truth := testnats.WalkTruth(t, urls, ns)
	check := func(what string, xs []fact) {
		for _, x := range xs {
			if seqs := truth[x.esk]; int(x.index) >= len(seqs) || seqs[x.index] != x.seq {
				t.Fatalf("a %s of %s@%d said seq %d; the walk disagrees", what, x.esk, x.index, x.seq)
			}
		}
	}
	check("write", writes)
	check("read", reads)
	t.Logf("%d writes and %d fresh reads agree with the walk", len(writes), len(reads))
	testnats.CheckIndices(t, urls, cfg, ns, truth, rand.New(rand.NewPCG(3, 4)))
}
