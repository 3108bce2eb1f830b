package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// A run is a sequence of events appended at consecutive indices of one ESK
// as one JetStream fast batch (stream AllowBatchPublish, nats-server
// 2.14+): the events are stored as they arrive, in order, and the batch
// stops at the first one the stream refuses ("gap: fail"); one reply at
// the end says how many were taken. Racing writers stay exact by two
// checks:
//
//   - the run's first event expects the ESK's last stream sequence, as a
//     conditional append does, so a run starts only at the ESK's count;
//   - every event carries a message id naming its ESK and index
//     (Nats-Msg-Id), so an event whose index another writer's run filled
//     meanwhile is dropped as a duplicate instead of landing one index
//     further; the run goes on after it.
//
// Each index thus receives one event, the first to arrive: an event for
// index i+1 is sent only after the one for i, so it cannot land before i
// is filled. The message ids need to be remembered only while runs that
// started at once are in flight: a run sends for at most runSendLimit,
// and NATS drops a fast batch whose next message is late by its batch
// timeout (10 s by default), both far within the stream's duplicate
// window (MinDuplicates).

// Reply subjects of a fast batch: "<inbox>.<id>.<flow>.<gap>.<seq>.<op>.$FI".
const (
	fastOpStart  = 0
	fastOpAppend = 1
	fastOpCommit = 2
	// fastFlow is the most messages between flow acknowledgements the
	// client allows; a run waits only for the last reply, so the fewer
	// the better.
	fastFlow = 500
	// runSendLimit bounds how long one run sends; what it has not sent by
	// then is sent by another run.
	runSendLimit = 5 * time.Second
)

// aheadPatience is how long AppendRun asks again for a count below the
// run's index before it reports the index ahead.
const aheadPatience = 2 * time.Second

// MinDuplicates is the shortest duplicate window of the log's stream with
// which [Log.AppendRun] is safe; the log provisions DefaultDuplicates.
const MinDuplicates = time.Minute

// headerMsgID is JetStream's message id, deduplicated within the stream's
// duplicate window.
const headerMsgID = "Nats-Msg-Id"

// RunResult is the answer of [Log.AppendRun].
type RunResult struct {
	// Filled is how many events of the run, from the first, are at their
	// indices: stored by this call or found there. It is the run's length
	// when AppendRun returns no error.
	Filled int
	// WriteID is the Detbus-Write-Id header of the events this call
	// stored: it tells them from another writer's.
	WriteID string
}

// AppendRun makes sure indices index, index+1, ... of esk hold an event,
// appending payloads[i] at index+i where the index is still free: the
// events another writer put at some of these indices are kept, and this
// call's for those indices are dropped. It starts only at the ESK's
// count, like [Log.ExistsOrWrite] (an index still past the count after
// two seconds is [*IndexAheadError]), and costs about one round trip whatever the run's
// length (at most [MaxBatch] events): a deterministic transform's group
// commit, where racing instances append the same events. Read the events
// back to compare them: those this call stored carry
// RunResult.WriteID in [HeaderWriteID].
//
// Every writer of the ESK must append with AppendRun for the indices to
// stay exact: its events carry message ids that name their index, which
// an unconditional write does not.
//
// Errors: [ErrInvalidESK], [ErrPayloadTooLarge] or [ErrInvalidOption] for
// bad input, nothing written; [ErrForbidden]; a refusal by JetStream,
// with RunResult.Filled saying how far the run got; [ErrUnavailable] when
// the run is not complete at the deadline.
func (l *Log) AppendRun(ctx context.Context, esk string, index uint64, payloads [][]byte, opts ...WriteOption) (RunResult, error) {
	return l.appendRun(ctx, esk, index, payloads, nil, opts)
}

// appendRun is AppendRun, with event i naming inputs[i] when inputs is
// not nil.
func (l *Log) appendRun(ctx context.Context, esk string, index uint64, payloads [][]byte, inputs []InputRef, opts []WriteOption) (RunResult, error) {
	if len(payloads) == 0 || len(payloads) > MaxBatch {
		return RunResult{}, fmt.Errorf("%w: a run holds 1 to %d events, not %d", ErrInvalidOption, MaxBatch, len(payloads))
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	res := RunResult{WriteID: nuid.Next()}
	msgs := make([]*nats.Msg, len(payloads))
	for i, p := range payloads {
		m, err := l.newMsg(ctx, esk, p, opts)
		if err != nil {
			return RunResult{}, err
		}
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(HeaderWriteID, res.WriteID)
		m.Header.Set(headerMsgID, runMsgID(esk, index+uint64(i)))
		if inputs != nil {
			setInput(m.Header, inputs[i])
		}
		msgs[i] = m
	}
	e := l.esk(esk)
	refresh := false
	var lastErr error
	var aheadSince time.Time
	for backoff := time.Millisecond; res.Filled < len(msgs); backoff = min(2*backoff, 100*time.Millisecond) {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%w: run to %q at %d: %d of %d events at their indices at the deadline: %v", ErrUnavailable, esk, index, res.Filled, len(msgs), lastErr)
		}
		at := index + uint64(res.Filled)
		var expect uint64
		t, known := e.tail()
		h, hinted := e.runHint()
		switch {
		case known && at <= t.index:
			res.Filled = int(min(uint64(len(msgs)), t.index+1-index))
			continue
		case known && at == t.index+1 && !refresh:
			expect = t.seq
		case hinted && at == h.index+1 && !refresh:
			expect = h.seq
		default:
			n, last, err := l.leaderTail(ctx, e)
			if err != nil {
				lastErr = err
				_ = sleepCtx(ctx, backoff)
				continue
			}
			refresh = false
			switch {
			case at < n:
				res.Filled = int(min(uint64(len(msgs)), n-index))
				continue
			case at > n:
				// On a replicated stream a writer may have learned of
				// events from a replica that applied them before the
				// leader did: ask again for a while before refusing.
				if aheadSince.IsZero() {
					aheadSince = time.Now()
				}
				if time.Since(aheadSince) > aheadPatience {
					return res, &IndexAheadError{ESK: esk, Index: at, Count: n}
				}
				refresh = true
				_ = sleepCtx(ctx, backoff)
				continue
			case n > 0:
				expect = last.Seq
			}
		}
		count, lastSeq, err := l.publishRun(ctx, esk, msgs[res.Filled:], expect)
		if count > 0 {
			res.Filled += count
			if lastSeq > 0 {
				// This call's last stored event, at the last filled index
				// unless that one was another's: tried as the expectation
				// of the next run, where a wrong one only fails the check.
				e.setRunHint(fact{index + uint64(res.Filled) - 1, lastSeq})
			}
		}
		var fe *ForbiddenError
		switch {
		case err == nil:
		case errors.As(err, &fe):
			return res, err
		case isConflict(err):
			lastErr, refresh = err, true
		case isDefinite(err):
			return res, fmt.Errorf("transport: JetStream refused the event for %q at %d (%d of %d at their indices): %w", esk, index+uint64(res.Filled), res.Filled, len(msgs), err)
		default:
			// No reply, or the run stopped sending: learn what is there.
			lastErr, refresh = err, true
			_ = sleepCtx(ctx, backoff)
		}
	}
	return res, nil
}

// runMsgID is the message id of the event at index of esk.
func runMsgID(esk string, index uint64) string {
	return "detbus." + esk + "." + strconv.FormatUint(index, 10)
}

// publishRun sends msgs as one fast batch, the first expecting the ESK's
// last sequence to be expect, and returns how many of them were taken
// (stored or dropped as duplicates), the stream sequence of the last one
// this batch stored (0 if none), and the refusal that stopped the batch
// early, if one did.
func (l *Log) publishRun(ctx context.Context, esk string, msgs []*nats.Msg, expect uint64) (int, uint64, error) {
	replies, err := l.runReplies.start(l.nc)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: run to %q: %v", ErrUnavailable, esk, err)
	}
	id := nuid.Next()
	ch := replies.wait(id)
	defer replies.done(id)
	gctx, release := l.denied.guard(ctx, esk, msgs[0].Subject)
	defer release()
	began := time.Now()
	sent := 0
	for i, m := range msgs {
		if i > 0 && time.Since(began) > runSendLimit {
			break
		}
		op := fastOpAppend
		switch {
		case i == len(msgs)-1:
			op = fastOpCommit
		case i == 0:
			op = fastOpStart
		}
		m.Reply = replies.base + "." + id + "." + strconv.Itoa(fastFlow) + ".fail." + strconv.Itoa(i+1) + "." + strconv.Itoa(op) + ".$FI"
		m.Header.Del(jetstream.ExpectedLastSubjSeqHeader)
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
		}
		if err := l.nc.PublishMsg(m); err != nil {
			return 0, 0, fmt.Errorf("%w: run to %q: %v", ErrUnavailable, esk, err)
		}
		sent++
	}
	if sent < len(msgs) {
		return 0, 0, fmt.Errorf("%w: run to %q: sending took over %v", ErrUnavailable, esk, runSendLimit)
	}
	// Wait at most half the time left, so that a lost reply leaves time
	// to read back and go on.
	dl, _ := gctx.Deadline()
	wait := time.NewTimer(min(2*time.Second, max(time.Until(dl)/2, time.Millisecond)))
	defer wait.Stop()
	var refusal error
	for {
		select {
		case m := <-ch:
			var r runReply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return 0, 0, fmt.Errorf("%w: run to %q: reply %q: %v", ErrUnavailable, esk, m.Data, err)
			}
			switch r.Type {
			case "err":
				refusal = r.Error
				continue
			case "gap":
				refusal = fmt.Errorf("%w: run to %q: message %d lost on the way", ErrUnavailable, esk, r.LastSeq)
				continue
			case "":
			default:
				continue
			}
			if r.Error != nil {
				if isBatchRetryFast(r.Error) {
					return 0, 0, fmt.Errorf("%w: run to %q: %v", ErrUnavailable, esk, r.Error)
				}
				return 0, 0, r.Error
			}
			if r.Count < len(msgs) && refusal == nil {
				refusal = fmt.Errorf("%w: run to %q: %d of %d events taken", ErrUnavailable, esk, r.Count, len(msgs))
			}
			if r.Count >= len(msgs) {
				refusal = nil
			}
			return min(r.Count, len(msgs)), r.Seq, refusal
		case <-wait.C:
			return 0, 0, fmt.Errorf("%w: run to %q: no acknowledgement", ErrUnavailable, esk)
		case <-gctx.Done():
			if ferr := forbidden(gctx); ferr != nil {
				return 0, 0, ferr
			}
			return 0, 0, fmt.Errorf("%w: run to %q: no acknowledgement: %v", ErrUnavailable, esk, gctx.Err())
		}
	}
}

// Fast batch error codes that do not last: the batch was cleaned up
// before its end (unknown id), or too many are in flight.
const (
	errCodeFastBatchUnknown = 10208
	errCodeFastBatchTooMany = 10211
)

func isBatchRetryFast(e *jetstream.APIError) bool {
	return e.ErrorCode == errCodeFastBatchUnknown || e.ErrorCode == errCodeFastBatchTooMany
}

// runReply is any reply to a fast batch: a flow acknowledgement
// ("ack"), a refused message ("err"), a gap ("gap"), or the final
// acknowledgement (no type).
type runReply struct {
	Type    string              `json:"type"`
	Seq     uint64              `json:"seq"`
	LastSeq uint64              `json:"last_seq"`
	Count   int                 `json:"count"`
	Error   *jetstream.APIError `json:"error"`
}

// runReplies routes the replies to fast batches, which come on one
// subscription of the connection's inbox, to the runs waiting for them.
type runReplies struct {
	once sync.Once
	err  error
	base string
	sub  *nats.Subscription

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
}

func (r *runReplies) start(nc *nats.Conn) (*runReplies, error) {
	r.once.Do(func() {
		r.base = nc.NewInbox()
		r.waiting = map[string]chan *nats.Msg{}
		r.sub, r.err = nc.Subscribe(r.base+".>", r.route)
	})
	return r, r.err
}

func (r *runReplies) route(m *nats.Msg) {
	// Flow acknowledgements are many and need no answer.
	if strings.HasPrefix(string(m.Data), `{"type":"ack"`) {
		return
	}
	rest := m.Subject[len(r.base)+1:]
	id, _, _ := strings.Cut(rest, ".")
	r.mu.Lock()
	ch := r.waiting[id]
	r.mu.Unlock()
	if ch == nil {
		return // a reply to a run that gave up, or to its messages after a refusal
	}
	select {
	case ch <- m:
	default: // the run has its answer already
	}
}

func (r *runReplies) wait(id string) chan *nats.Msg {
	ch := make(chan *nats.Msg, 4)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	return ch
}

func (r *runReplies) done(id string) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

func (r *runReplies) close() {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
}
