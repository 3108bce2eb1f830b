package transport_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/detbus/detbus/internal/lincheck"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestLinearizableExistsOrWrite runs concurrent clients, each with its own
// Log and connection, doing conditional appends and reads by index on a
// few ESKs, and checks that the history is linearizable against the
// append-only log of package lincheck.
func TestLinearizableExistsOrWrite(t *testing.T) {
	t.Run("node", func(t *testing.T) {
		s := testnats.Node(t)
		runLinearizability(t, s.ClientURL(), transport.Config{}, 6, 300)
	})
	t.Run("cluster3", func(t *testing.T) {
		servers := testnats.Cluster(t, 3)
		runLinearizability(t, testnats.URLs(servers), transport.Config{Replicas: 3}, 4, 150)
	})
}

func runLinearizability(t *testing.T, url string, cfg transport.Config, clients, opsPerClient int) {
	esks := []string{"lin.a", "lin.b"}
	logs := make([]*transport.Log, clients)
	for c := range logs {
		logs[c] = testnats.Log(t, url, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		failure error
	)
	fail := func(err error) {
		mu.Lock()
		if failure == nil {
			failure = err
		}
		mu.Unlock()
		cancel()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			ops, err := linClient(ctx, logs[c], c, opsPerClient, esks)
			mu.Lock()
			history = append(history, ops...)
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("client %d: %w", c, err))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failure != nil {
		t.Fatalf("%v", failure)
	}

	counts := lincheck.Count(history)
	t.Logf("%d operations in %v: %v", len(history), elapsed.Round(time.Millisecond), counts)
	// Each outcome should have come up, or the history checks little.
	if !counts.All() {
		t.Errorf("the workload did not produce every outcome: %v", counts)
	}

	checkStart := time.Now()
	res, path := lincheck.Check(history, time.Minute, t.TempDir())
	t.Logf("linearizability check: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is %s, want %s (visualization: %s)", len(history), res, porcupine.Ok, path)
	}
}

// linClient runs one client's operations and returns its history. Its
// view of each ESK's count comes only from its own results, so it is often
// stale, which yields Present and index-ahead outcomes as well as writes.
func linClient(ctx context.Context, l *transport.Log, client, n int, esks []string) ([]porcupine.Operation, error) {
	rng := rand.New(rand.NewPCG(uint64(client)+1, 0x5eed))
	known := make(map[string]uint64, len(esks)) // the client's idea of each count
	ops := make([]porcupine.Operation, 0, n)
	for op := range n {
		esk := esks[rng.IntN(len(esks))]
		k := known[esk]
		var in lincheck.Input
		if rng.IntN(10) < 7 {
			idx := k
			switch r := rng.IntN(20); {
			case r < 4 && k > 0:
				idx = k - 1
			case r < 7:
				idx = k + 1
			}
			// Mostly a payload unique to this call; sometimes one every
			// client uses for this index, so that another client's event
			// can be equal to it.
			payload := fmt.Sprintf(`{"c":%d,"op":%d}`, client, op)
			if rng.IntN(4) == 0 {
				payload = fmt.Sprintf(`{"esk":%q,"i":%d}`, esk, idx)
			}
			in = lincheck.Input{Op: lincheck.Append, ESK: esk, Index: idx, Payload: payload}
		} else {
			lo := max(int64(k)-3, 0)
			in = lincheck.Input{Op: lincheck.Get, ESK: esk, Index: uint64(lo + rng.Int64N(int64(k)+2-lo))}
		}

		var out lincheck.Output
		call := time.Now().UnixNano()
		var err error
		if in.Op == lincheck.Append {
			var r transport.AppendResult
			r, err = l.ExistsOrWrite(ctx, in.ESK, in.Index, []byte(in.Payload))
			var ahead *transport.IndexAheadError
			switch {
			case err == nil:
				if r.Index != in.Index || r.ESK != in.ESK {
					return ops, fmt.Errorf("append(%s, %d) answered for %+v", in.ESK, in.Index, r.Position)
				}
				out.Written, out.Present, out.Equal = r.Outcome == transport.Written, r.Outcome == transport.Present, r.Equal
				known[esk] = max(known[esk], in.Index+1)
			case errors.As(err, &ahead) && errors.Is(err, transport.ErrIndexAhead):
				out.Ahead, err = true, nil
				known[esk] = ahead.Count
			}
		} else {
			var ev transport.Event
			ev, err = l.Get(ctx, in.ESK, in.Index)
			switch {
			case err == nil:
				if ev.Index != in.Index || ev.ESK != in.ESK {
					return ops, fmt.Errorf("get(%s, %d) answered %s at %d", in.ESK, in.Index, ev.ESK, ev.Index)
				}
				out.Found, out.Payload = true, string(ev.Data)
				known[esk] = max(known[esk], in.Index+1)
			case errors.Is(err, transport.ErrNotFound):
				err = nil
			}
		}
		ret := time.Now().UnixNano()
		if err != nil {
			return ops, fmt.Errorf("op %d %s: %w", op, lincheck.Describe(in, out), err)
		}
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	}
	return ops, nil
}
