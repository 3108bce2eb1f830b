package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/lincheck"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// headerOp names the operation that wrote an event, so that the event of
// every call can be told apart after the run, whatever its payload.
const headerOp = "Detbus-Fault-Op"

// opTimeout bounds one operation of the workload: an operation still
// waiting for a leader then ends with an unknown outcome and the client
// goes on.
const opTimeout = 4 * time.Second

var discardLogger = slog.New(slog.DiscardHandler)

type opKind uint8

const (
	opAppend opKind = iota + 1 // ExistsOrWrite
	opWrite                    // Write
	opGet                      // Get
)

// record is one operation of the workload, as its client saw it.
type record struct {
	client    string
	kind      opKind
	esk       string
	index     uint64 // asked (append, get), or where an acknowledged write landed
	payload   string
	id        string // the headerOp of the event it wrote
	call, ret time.Duration
	out       lincheck.Output
	// unknown: an append or a write whose outcome did not come back
	// (unavailable, a timeout); acked: a write acknowledged, even if its
	// index was not learned (then unknown too, until looked up).
	unknown, acked bool
	landed         bool   // an unknown outcome found in the log after the run
	failed         bool   // a get that failed: no outcome, no effect
	count          uint64 // the count an index-ahead answer reported
	err            string
}

// succeeded reports whether the operation is a write that the cluster
// acknowledged: an append written by this call or an acknowledged write.
func (r *record) succeeded() bool {
	return (r.kind == opAppend && !r.unknown && r.out.Written) || (r.kind == opWrite && r.acked)
}

// history collects the records of every client.
type history struct {
	start time.Time
	mu    sync.Mutex
	recs  []*record
}

func (h *history) now() time.Duration { return time.Since(h.start) }

func (h *history) add(r *record) {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
}

func (h *history) records() []*record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*record(nil), h.recs...)
}

// linClient does conditional appends, writes and reads by index on a few
// ESKs shared with the other clients, until ctx ends. Its idea of each
// ESK's count comes only from its own results, so it is often stale,
// which yields Present and index-ahead outcomes as well as writes.
func linClient(ctx context.Context, l *transport.Log, h *history, client int, esks []string, pace time.Duration) {
	name := fmt.Sprintf("c%d", client)
	rng := rand.New(rand.NewPCG(uint64(client)+1, 0xfa17))
	known := map[string]uint64{}
	paced(ctx, pace, func(n int) {
		esk := esks[rng.IntN(len(esks))]
		k := known[esk]
		r := &record{client: name, esk: esk, id: fmt.Sprintf("%s-%d", name, n)}
		switch p := rng.IntN(20); {
		case p < 11:
			r.kind, r.index = opAppend, k
			switch q := rng.IntN(20); {
			case q < 4 && k > 0:
				r.index = k - 1
			case q < 6:
				r.index = k + 1
			}
			// Mostly a payload unique to this call; sometimes one that
			// every client uses for this index, so that another client's
			// event can be equal to it.
			r.payload = fmt.Sprintf(`{"c":%d,"op":%d}`, client, n)
			if rng.IntN(4) == 0 {
				r.payload = fmt.Sprintf(`{"esk":%q,"i":%d}`, esk, r.index)
			}
		case p < 14:
			r.kind, r.payload = opWrite, fmt.Sprintf(`{"c":%d,"op":%d,"w":true}`, client, n)
		default:
			lo := max(int64(k)-3, 0)
			r.kind, r.index = opGet, uint64(lo+rng.Int64N(int64(k)+2-lo))
		}
		do(l, h, r)
		switch {
		case r.kind == opGet && r.out.Found, r.kind == opAppend && !r.unknown && !r.out.Ahead:
			known[esk] = max(known[esk], r.index+1)
		case r.kind == opWrite && r.acked && !r.unknown:
			known[esk] = max(known[esk], r.index+1)
		case r.kind == opAppend && r.out.Ahead:
			known[esk] = r.count
		}
		h.add(r)
	})
}

// paced calls f with 0, 1, 2, ... once every pace until ctx ends.
func paced(ctx context.Context, pace time.Duration, f func(n int)) {
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f(n)
	}
}

// do runs one operation and fills in its outcome.
func do(l *transport.Log, h *history, r *record) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	hdr := transport.WithHeader(headerOp, r.id)
	r.call = h.now()
	var err error
	switch r.kind {
	case opAppend:
		var res transport.AppendResult
		res, err = l.ExistsOrWrite(ctx, r.esk, r.index, []byte(r.payload), hdr)
		r.ret = h.now()
		var ahead *transport.IndexAheadError
		switch {
		case err == nil:
			r.out = lincheck.Output{Written: res.Outcome == transport.Written, Present: res.Outcome == transport.Present, Equal: res.Equal}
			if res.Index != r.index || res.ESK != r.esk {
				r.err = fmt.Sprintf("answered for %s at %d", res.ESK, res.Index)
			}
		case errors.As(err, &ahead):
			r.out, r.count = lincheck.Ahead, ahead.Count
		default:
			r.unknown, r.err = true, err.Error()
		}
	case opWrite:
		var pos transport.Position
		pos, err = l.Write(ctx, r.esk, []byte(r.payload), hdr)
		r.ret = h.now()
		switch {
		case err == nil:
			r.acked, r.index, r.out = true, pos.Index, lincheck.Written
		case pos.Seq != 0: // stored, its index not learned
			r.acked, r.unknown, r.err = true, true, err.Error()
		default:
			r.unknown, r.err = true, err.Error()
		}
	case opGet:
		var ev transport.Event
		ev, err = l.Get(ctx, r.esk, r.index)
		r.ret = h.now()
		switch {
		case err == nil:
			r.out = lincheck.FoundPayload(string(ev.Data))
			if ev.Index != r.index || ev.ESK != r.esk {
				r.err = fmt.Sprintf("answered %s at %d", ev.ESK, ev.Index)
			}
		case errors.Is(err, transport.ErrNotFound):
			r.out = lincheck.NotFound
		default:
			r.failed, r.err = true, err.Error()
		}
	}
}

// bankWriter writes bank commands, each a Write of its own, to a few
// account ESKs until ctx ends.
func bankWriter(ctx context.Context, l *transport.Log, h *history, pace time.Duration) {
	rng := rand.New(rand.NewPCG(7, 7))
	accounts := []string{"alice", "bob", "carol", "dave"}
	paced(ctx, pace, func(n int) {
		a, b := accounts[rng.IntN(len(accounts))], accounts[rng.IntN(len(accounts))]
		var cmd bank.Command
		switch rng.IntN(3) {
		case 0:
			cmd = bank.Command{Op: bank.OpDeposit, Account: a, Amount: 1 + rng.Int64N(100)}
		case 1:
			cmd = bank.Command{Op: bank.OpWithdraw, Account: a, Amount: 1 + rng.Int64N(120)}
		default:
			cmd = bank.Command{Op: bank.OpTransfer, From: a, To: b, Amount: 1 + rng.Int64N(80)}
		}
		cmd.ID = fmt.Sprintf("b%d", n)
		r := &record{client: "bank", kind: opWrite, esk: "bank.commands." + a, id: cmd.ID, payload: string(transform.JSON(cmd))}
		do(l, h, r)
		h.add(r)
	})
}

// detInstance runs one instance of the bank DET like a supervisor would:
// when Run stops on an error other than a divergence, the instance is
// started again (restoring the newest snapshot). Restarts and the errors
// behind them are counted; a divergence ends the instance.
type detInstance struct {
	name string
	log  *transport.Log
	snap *transform.SnapshotStore

	mu       sync.Mutex
	runner   *transform.Runner
	restarts []string
	fatal    error
}

func (d *detInstance) run(ctx context.Context) {
	for {
		r, err := transform.NewRunner(transform.Config{Spec: bank.Spec(), Log: d.log, Instance: d.name,
			Snapshots: d.snap, SnapshotEvery: 250, Logger: discardLogger})
		if err != nil {
			d.setFatal(err)
			return
		}
		d.mu.Lock()
		d.runner = r
		d.mu.Unlock()
		err = r.Run(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, transform.ErrDivergence):
			d.setFatal(err)
			return
		}
		d.mu.Lock()
		d.restarts = append(d.restarts, fmt.Sprint(err))
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *detInstance) setFatal(err error) {
	d.mu.Lock()
	d.fatal = err
	d.mu.Unlock()
}

func (d *detInstance) status() (transform.Status, []string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st transform.Status
	if d.runner != nil {
		st = d.runner.Status()
	}
	return st, append([]string(nil), d.restarts...), d.fatal
}
