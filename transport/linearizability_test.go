package transport_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// The sequential specification checked below: per ESK, an append-only log
// of payloads.
//
//   - append(esk, i, p) when i == len: written, and p is appended;
//   - append(esk, i, p) when i < len: present, equal iff log[i] == p;
//   - append(esk, i, p) when i > len: an index-ahead error;
//   - get(esk, i): found with log[i] when i < len, else not found.

type linOp uint8

const (
	linAppend linOp = iota + 1
	linGet
)

type linInput struct {
	op      linOp
	esk     string
	index   uint64
	payload string // append only
}

type linOutput struct {
	// append
	written, present, equal, ahead bool
	// get
	found   bool
	payload string
}

// linState is one ESK's log. Step never modifies a state; it returns a new
// one.
type linState []string

var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byESK := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			esk := op.Input.(linInput).esk
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
	Init: func() any { return linState(nil) },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(linState), input.(linInput), output.(linOutput)
		n := uint64(len(st))
		switch in.op {
		case linAppend:
			switch {
			case in.index == n:
				if out.written && !out.present && !out.ahead && out.equal {
					next := make(linState, len(st), len(st)+1)
					copy(next, st)
					return true, append(next, in.payload)
				}
			case in.index < n:
				if out.present && !out.written && !out.ahead && out.equal == (st[in.index] == in.payload) {
					return true, st
				}
			default:
				if out.ahead && !out.written && !out.present {
					return true, st
				}
			}
			return false, st
		case linGet:
			if in.index < n {
				return out.found && out.payload == st[in.index], st
			}
			return !out.found, st
		}
		return false, st
	},
	Equal: func(a, b any) bool { return slices.Equal(a.(linState), b.(linState)) },
	Hash: func(state any) uint64 {
		h := fnv.New64a()
		for _, p := range state.(linState) {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		if in.op == linGet {
			if !out.found {
				return fmt.Sprintf("get(%s, %d) -> not found", in.esk, in.index)
			}
			return fmt.Sprintf("get(%s, %d) -> %s", in.esk, in.index, out.payload)
		}
		res := "?"
		switch {
		case out.written:
			res = "written"
		case out.present:
			res = fmt.Sprintf("present, equal=%v", out.equal)
		case out.ahead:
			res = "index ahead"
		}
		return fmt.Sprintf("append(%s, %d, %s) -> %s", in.esk, in.index, in.payload, res)
	},
	DescribeState: func(state any) string {
		st := state.(linState)
		if len(st) <= 4 {
			return fmt.Sprintf("%d: %v", len(st), []string(st))
		}
		return fmt.Sprintf("%d: [... %s]", len(st), strings.Join(st[len(st)-4:], " "))
	},
}

// TestLinearizableExistsOrWrite runs concurrent clients, each with its own
// Log and connection, doing conditional appends and reads by index on a
// few ESKs, and checks that the history is linearizable against the
// append-only log above.
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

// TestLinearizableModel checks that the model rejects what it must, so
// that an Ok above means something.
func TestLinearizableModel(t *testing.T) {
	app := func(c int, call, ret int64, i uint64, p string, out linOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Call: call, Return: ret, Input: linInput{op: linAppend, esk: "m", index: i, payload: p}, Output: out}
	}
	get := func(c int, call, ret int64, i uint64, out linOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Call: call, Return: ret, Input: linInput{op: linGet, esk: "m", index: i}, Output: out}
	}
	written := linOutput{written: true, equal: true}
	for _, tc := range []struct {
		name    string
		history []porcupine.Operation
		ok      bool
	}{
		{"sequential", []porcupine.Operation{
			app(0, 0, 1, 0, "a", written),
			app(1, 2, 3, 0, "a", linOutput{present: true, equal: true}),
			app(1, 4, 5, 0, "b", linOutput{present: true}),
			app(0, 6, 7, 2, "c", linOutput{ahead: true}),
			get(1, 8, 9, 0, linOutput{found: true, payload: "a"}),
			get(1, 10, 11, 1, linOutput{}),
		}, true},
		{"concurrent get may miss a concurrent append", []porcupine.Operation{
			app(0, 0, 10, 0, "a", written),
			get(1, 1, 2, 0, linOutput{}),
			get(1, 3, 4, 0, linOutput{found: true, payload: "a"}),
		}, true},
		{"two writes at one index", []porcupine.Operation{
			app(0, 0, 10, 0, "a", written),
			app(1, 0, 10, 0, "b", written),
		}, false},
		{"stale read after the append returned", []porcupine.Operation{
			app(0, 0, 1, 0, "a", written),
			get(1, 2, 3, 0, linOutput{}),
		}, false},
		{"read then unread", []porcupine.Operation{
			app(0, 0, 10, 0, "a", written),
			get(1, 1, 2, 0, linOutput{found: true, payload: "a"}),
			get(1, 3, 4, 0, linOutput{}),
		}, false},
		{"present with the wrong equality", []porcupine.Operation{
			app(0, 0, 1, 0, "a", written),
			app(1, 2, 3, 0, "b", linOutput{present: true, equal: true}),
		}, false},
		{"ahead at the count", []porcupine.Operation{
			app(0, 0, 1, 0, "a", written),
			app(1, 2, 3, 1, "b", linOutput{ahead: true}),
		}, false},
	} {
		if got := porcupine.CheckOperations(linModel, tc.history); got != tc.ok {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.ok)
		}
		if !tc.ok { // the failure report must render
			res, info := porcupine.CheckOperationsVerbose(linModel, tc.history, time.Second)
			if res != porcupine.Illegal {
				t.Errorf("%s: verbose check = %s", tc.name, res)
			}
			if err := porcupine.VisualizePath(linModel, info, filepath.Join(t.TempDir(), "v.html")); err != nil {
				t.Errorf("%s: visualize: %v", tc.name, err)
			}
		}
	}
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

	var counts [4]int // written, present (equal), present (not equal), ahead
	var gets, found int
	for _, op := range history {
		out := op.Output.(linOutput)
		switch op.Input.(linInput).op {
		case linAppend:
			switch {
			case out.written:
				counts[0]++
			case out.present && out.equal:
				counts[1]++
			case out.present:
				counts[2]++
			case out.ahead:
				counts[3]++
			}
		case linGet:
			gets++
			if out.found {
				found++
			}
		}
	}
	t.Logf("%d operations in %v: appends written %d, present equal %d, present other %d, ahead %d; gets %d (found %d)",
		len(history), elapsed.Round(time.Millisecond), counts[0], counts[1], counts[2], counts[3], gets, found)
	// Each outcome should have come up, or the history checks little.
	if counts[0] == 0 || counts[1] == 0 || counts[2] == 0 || counts[3] == 0 || found == 0 || found == gets {
		t.Errorf("the workload did not produce every outcome: %v, gets %d found %d", counts, gets, found)
	}

	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(linModel, history, time.Minute)
	t.Logf("linearizability check: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := filepath.Join(t.TempDir(), "linearizability.html")
		if err := porcupine.VisualizePath(linModel, info, path); err != nil {
			t.Logf("visualization: %v", err)
		} else {
			t.Logf("visualization written to %s", path)
		}
		t.Fatalf("history of %d operations is %s, want %s", len(history), res, porcupine.Ok)
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
		var in linInput
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
			in = linInput{op: linAppend, esk: esk, index: idx, payload: payload}
		} else {
			lo := max(int64(k)-3, 0)
			in = linInput{op: linGet, esk: esk, index: uint64(lo + rng.Int64N(int64(k)+2-lo))}
		}

		var out linOutput
		call := time.Now().UnixNano()
		var err error
		if in.op == linAppend {
			var r transport.AppendResult
			r, err = l.ExistsOrWrite(ctx, in.esk, in.index, []byte(in.payload))
			var ahead *transport.IndexAheadError
			switch {
			case err == nil:
				if r.Index != in.index || r.ESK != in.esk {
					return ops, fmt.Errorf("append(%s, %d) answered for %+v", in.esk, in.index, r.Position)
				}
				out.written, out.present, out.equal = r.Outcome == transport.Written, r.Outcome == transport.Present, r.Equal
				known[esk] = max(known[esk], in.index+1)
			case errors.As(err, &ahead) && errors.Is(err, transport.ErrIndexAhead):
				out.ahead, err = true, nil
				known[esk] = ahead.Count
			}
		} else {
			var ev transport.Event
			ev, err = l.Get(ctx, in.esk, in.index)
			switch {
			case err == nil:
				if ev.Index != in.index || ev.ESK != in.esk {
					return ops, fmt.Errorf("get(%s, %d) answered %s at %d", in.esk, in.index, ev.ESK, ev.Index)
				}
				out.found, out.payload = true, string(ev.Data)
				known[esk] = max(known[esk], in.index+1)
			case errors.Is(err, transport.ErrNotFound):
				err = nil
			}
		}
		ret := time.Now().UnixNano()
		if err != nil {
			return ops, fmt.Errorf("op %d %s: %w", op, linModel.DescribeOperation(in, out), err)
		}
		ops = append(ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	}
	return ops, nil
}
