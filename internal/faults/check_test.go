package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/lincheck"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// landed is the log as it stands after the run, read in total order.
type landed struct {
	events []transport.Event
	byOp   map[string]transport.Event // by headerOp
	counts map[string]uint64          // per ESK
}

// walk reads the whole log and checks its shape: stream sequences 1..n with
// no gap; per ESK, indices 0..count-1 in order, with the counts the stream
// leader reports; no operation's event twice.
func walk(ctx context.Context, l *transport.Log) (*landed, []error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	w := &landed{byOp: map[string]transport.Event{}, counts: map[string]uint64{}}
	for ev, err := range l.Events(ctx, nil, transport.ReadOptions{}) {
		if err != nil {
			return w, append(errs, fmt.Errorf("reading the log: %w", err))
		}
		if want := uint64(len(w.events)) + 1; ev.Seq != want {
			errs = append(errs, fmt.Errorf("sequence %d where %d was due: a gap", ev.Seq, want))
		}
		if ev.Index != w.counts[ev.ESK] {
			errs = append(errs, fmt.Errorf("%s: index %d at sequence %d where %d was due", ev.ESK, ev.Index, ev.Seq, w.counts[ev.ESK]))
		}
		w.counts[ev.ESK]++
		if id := ev.Header.Get(headerOp); id != "" {
			if prev, dup := w.byOp[id]; dup {
				errs = append(errs, fmt.Errorf("operation %s landed twice: %s#%d (seq %d) and %s#%d (seq %d)",
					id, prev.ESK, prev.Index, prev.Seq, ev.ESK, ev.Index, ev.Seq))
			}
			w.byOp[id] = ev
		}
		w.events = append(w.events, ev)
	}
	st, err := l.State(ctx, ">")
	if err != nil {
		return w, append(errs, err)
	}
	if st.Messages != uint64(len(w.events)) || st.LastSeq != uint64(len(w.events)) {
		errs = append(errs, fmt.Errorf("read %d events; the stream has %d, last sequence %d", len(w.events), st.Messages, st.LastSeq))
	}
	for esk, n := range st.ESKs {
		if w.counts[esk] != n {
			errs = append(errs, fmt.Errorf("%s: read %d events, the leader counts %d", esk, w.counts[esk], n))
		}
	}
	return w, errs
}

// checkAcked checks that every acknowledged write is in the log where its
// writer was told, with its payload: none lost, none moved.
func checkAcked(recs []*record, w *landed) (acked, lost int, errs []error) {
	for _, r := range recs {
		if !r.succeeded() {
			continue
		}
		acked++
		ev, ok := w.byOp[r.id]
		switch {
		case !ok:
			lost++
			errs = append(errs, fmt.Errorf("LOST: %s %s at %d (acknowledged at %v) is not in the log", r.id, r.esk, r.index, r.ret))
		case ev.ESK != r.esk || string(ev.Data) != r.payload:
			errs = append(errs, fmt.Errorf("%s: landed as %s %s, acknowledged as %s %s", r.id, ev.ESK, ev.Data, r.esk, r.payload))
		case !r.unknown && ev.Index != r.index:
			errs = append(errs, fmt.Errorf("%s: at %s#%d, acknowledged at index %d", r.id, r.esk, ev.Index, r.index))
		}
	}
	return acked, lost, errs
}

// resolution is what became of the operations whose outcome their client
// did not learn.
type resolution struct {
	unknown, landed, notLanded, unresolved int
}

// resolve settles every unknown outcome: it reads each unknown append's
// index back, as a client would, and checks the answer against the walked
// log; an unknown write is looked up by its operation. It records whether
// each one landed (r.landed), and where (r.index).
func resolve(ctx context.Context, l *transport.Log, recs []*record, w *landed) (res resolution, errs []error) {
	for _, r := range recs {
		if !r.unknown {
			continue
		}
		res.unknown++
		ev, ok := w.byOp[r.id]
		if r.kind == opAppend {
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			got, err := l.Get(gctx, r.esk, r.index)
			cancel()
			switch {
			case err != nil && !errors.Is(err, transport.ErrNotFound):
				res.unresolved++
				errs = append(errs, fmt.Errorf("read back %s#%d for %s: %w", r.esk, r.index, r.id, err))
				continue
			case (err == nil && got.Header.Get(headerOp) == r.id) != ok:
				res.unresolved++
				errs = append(errs, fmt.Errorf("read back %s#%d for %s disagrees with the log", r.esk, r.index, r.id))
				continue
			case ok && (ev.ESK != r.esk || ev.Index != r.index):
				errs = append(errs, fmt.Errorf("append %s at %s#%d landed at %s#%d", r.id, r.esk, r.index, ev.ESK, ev.Index))
			}
		}
		if ok {
			res.landed++
			r.landed, r.index = true, ev.Index
		} else {
			res.notLanded++
		}
	}
	return res, errs
}

// linHistory turns the records of reads and writes into a porcupine
// history. An operation whose outcome was unknown counts as a written
// append lasting until resolvedAt if its event landed, and is left out if
// it did not; so is a read that failed.
func linHistory(recs []*record, resolvedAt time.Duration) []porcupine.Operation {
	ids := map[string]int{}
	var ops []porcupine.Operation
	for _, r := range recs {
		if _, ok := ids[r.client]; !ok {
			ids[r.client] = len(ids)
		}
		c, call, ret := ids[r.client], int64(r.call), int64(r.ret)
		switch {
		case r.kind == opGet && !r.failed:
			ops = append(ops, lincheck.GetOp(c, call, ret, r.esk, r.index, r.out))
		case r.kind == opGet:
		case r.unknown:
			if !r.landed {
				continue
			}
			if !r.acked { // it took effect at some time after its call
				ret = int64(resolvedAt)
			}
			ops = append(ops, lincheck.AppendOp(c, call, ret, r.esk, r.index, r.payload, lincheck.Written))
		case r.kind == opWrite:
			ops = append(ops, lincheck.AppendOp(c, call, ret, r.esk, r.index, r.payload, lincheck.Written))
		default:
			ops = append(ops, lincheck.AppendOp(c, call, ret, r.esk, r.index, r.payload, r.out))
		}
	}
	return ops
}

// checkDET checks the DET's output against the bank applied offline to
// the commands that landed, in log order.
func checkDET(w *landed) (decisions int, errs []error) {
	spec := bank.Spec()
	ref := spec.New()
	var want, got []string
	for _, ev := range w.events {
		switch {
		case strings.HasPrefix(ev.ESK, "bank.commands."):
			in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, Data: ev.Data}
			outs, err := ref.Step(transform.NewContext(in), in)
			if err != nil {
				return 0, []error{fmt.Errorf("reference step at %s#%d: %w", ev.ESK, ev.Index, err)}
			}
			for _, o := range outs {
				want = append(want, string(o))
			}
		case ev.ESK == spec.Output:
			got = append(got, string(ev.Data))
		case ev.ESK == spec.Output+".rejected":
			errs = append(errs, fmt.Errorf("the DET rejected an input: %s", ev.Data))
		}
	}
	if len(got) != len(want) {
		errs = append(errs, fmt.Errorf("%d decisions, the reference has %d", len(got), len(want)))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			errs = append(errs, fmt.Errorf("decision %d:\n got %s\nwant %s", i, got[i], want[i]))
			break
		}
	}
	return len(got), errs
}

// checkReplicas makes each node in turn the stream leader and reads the
// whole stream from it (stream message gets are answered by the leader),
// so that a replica whose log forked from the others shows.
func checkReplicas(ctx context.Context, nc *nats.Conn, stream string, nodes []string, w *landed) []error {
	var errs []error
	for _, node := range nodes {
		if err := leadFrom(ctx, nc, stream, node); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := sameLog(ctx, nc, stream, node, w); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// leadFrom asks the stream leader to step down in favour of node until
// node leads.
func leadFrom(ctx context.Context, nc *nats.Conn, stream, node string) error {
	return poll(ctx, time.Minute, node+" leading the stream", func(ctx context.Context) error {
		leader, err := streamLeader(ctx, nc, stream)
		if err != nil || leader == node {
			return err
		}
		req := fmt.Sprintf(`{"placement":{"preferred":%q}}`, node)
		if _, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(req)); err != nil {
			return err
		}
		return fmt.Errorf("%s leads, asked to step down for %s", leader, node)
	})
}

func streamLeader(ctx context.Context, nc *nats.Conn, stream string) (string, error) {
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+stream, nil)
	if err != nil {
		return "", err
	}
	var info struct {
		Cluster *struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return "", err
	}
	if info.Error != nil {
		return "", errors.New(info.Error.Description)
	}
	if info.Cluster == nil {
		return "", errors.New("stream info without cluster")
	}
	return info.Cluster.Leader, nil
}

// sameLog reads every message of the stream from its leader, node, and
// compares it with the walked log.
func sameLog(ctx context.Context, nc *nats.Conn, stream, node string, w *landed) error {
	const workers = 8
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	seqs := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range seqs {
				err := sameMsg(ctx, nc, stream, w.events[i])
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s as leader: %w", node, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range w.events {
		seqs <- i
	}
	close(seqs)
	wg.Wait()
	if first != nil {
		return first
	}
	leader, err := streamLeader(ctx, nc, stream)
	if err != nil {
		return err
	}
	if leader != node {
		return fmt.Errorf("%s lost the lead to %s while its log was read", node, leader)
	}
	return nil
}

func sameMsg(ctx context.Context, nc *nats.Conn, stream string, ev transport.Event) error {
	req := fmt.Sprintf(`{"seq":%d}`, ev.Seq)
	var reply *nats.Msg
	err := poll(ctx, 30*time.Second, fmt.Sprintf("message %d", ev.Seq), func(ctx context.Context) (err error) {
		reply, err = nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, []byte(req))
		return err
	})
	if err != nil {
		return err
	}
	var got struct {
		Message *struct {
			Subject string `json:"subject"`
			Seq     uint64 `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &got); err != nil {
		return fmt.Errorf("message %d: %w", ev.Seq, err)
	}
	switch m := got.Message; {
	case got.Error != nil:
		return fmt.Errorf("message %d: %s", ev.Seq, got.Error.Description)
	case m == nil || m.Seq != ev.Seq:
		return fmt.Errorf("message %d: no message in %s", ev.Seq, reply.Data)
	case !strings.HasSuffix(m.Subject, "."+ev.ESK) || !bytes.Equal(m.Data, ev.Data):
		return fmt.Errorf("message %d differs: %s %q, read before as %s %q", ev.Seq, m.Subject, m.Data, ev.ESK, ev.Data)
	case !bytes.Contains(m.Header, []byte(ev.Header.Get(headerOp))):
		return fmt.Errorf("message %d differs in its headers", ev.Seq)
	}
	return nil
}

// longestGap is the longest time between two successful writes from
// start on, and when it began.
func longestGap(recs []*record, from, to time.Duration) (gap, at time.Duration) {
	var rets []time.Duration
	for _, r := range recs {
		if r.succeeded() && !r.unknown {
			rets = append(rets, r.ret)
		}
	}
	slices.Sort(rets)
	prev := from
	for _, t := range rets {
		if t < from || t > to {
			continue
		}
		if t-prev > gap {
			gap, at = t-prev, prev
		}
		prev = t
	}
	if to-prev > gap {
		gap, at = to-prev, prev
	}
	return gap, at
}

// resumedAfter is how long after t the first write that started after t
// succeeded (-1 if none did).
func resumedAfter(recs []*record, t time.Duration) time.Duration {
	first := time.Duration(-1)
	for _, r := range recs {
		if r.succeeded() && !r.unknown && r.call >= t && (first < 0 || r.ret < first) {
			first = r.ret
		}
	}
	if first < 0 {
		return -1
	}
	return first - t
}
