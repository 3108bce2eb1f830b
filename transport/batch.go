package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// JetStream error codes the log acts on.
const (
	errCodeWrongLastSequence  = 10071 // a conditional publish found another last sequence
	errCodeInProcessSameMsgID = 10158 // the same message id is being stored
	errCodeLastSeqInFlight    = 10164 // another conditional publish to the subject is in flight (replicated)
	errCodeBatchIncomplete    = 10176 // an atomic batch lost a message on the way
	errCodeBatchTooMany       = 10210 // too many atomic batches in flight
)

// MaxBatch is the most events [Log.AppendBatch] takes at once: NATS's
// limit on an atomic batch.
const MaxBatch = 1000

// Headers of NATS's atomic batch publish.
const (
	headerBatchID     = "Nats-Batch-Id"
	headerBatchSeq    = "Nats-Batch-Sequence"
	headerBatchCommit = "Nats-Batch-Commit"
)

// BatchResult is the answer of [Log.AppendBatch].
type BatchResult struct {
	// Outcome is Written when this call stored every event, at indices
	// index to index+len-1 with contiguous stream sequences from First;
	// Present when the index already held an event, and nothing of this
	// call was stored.
	Outcome Outcome
	First   Position
}

// AppendBatch appends payloads at indices index, index+1, ... of esk,
// all of them or none, and only if index equals the ESK's count: one
// JetStream atomic batch, whose first event expects the ESK's last
// sequence. It is the conditional append of many events in one round
// trip: a deterministic transform's group commit. At most [MaxBatch]
// events; each is checked as [Log.ExistsOrWrite] checks one. Like
// ExistsOrWrite, a conflict, a timeout or a lost reply is resolved by
// reading index back: the batch carries one Detbus-Write-Id, which tells
// this call's events from another's.
//
// NATS stores an atomic batch in a staging store before it commits it,
// which on a single node's file store costs about 2 ms a batch whatever
// its size: a batch pays for itself only with many events.
//
// Errors: [*IndexAheadError] when index is past the count;
// [ErrInvalidESK], [ErrPayloadTooLarge] or [ErrInvalidOption] (more than
// MaxBatch events, none) for bad input, nothing written; [ErrForbidden];
// [ErrUnavailable] when NATS did not answer in time, the outcome unknown.
func (l *Log) AppendBatch(ctx context.Context, esk string, index uint64, payloads [][]byte, opts ...WriteOption) (BatchResult, error) {
	if len(payloads) == 0 || len(payloads) > MaxBatch {
		return BatchResult{}, fmt.Errorf("%w: a batch holds 1 to %d events, not %d", ErrInvalidOption, MaxBatch, len(payloads))
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	writeID := nuid.Next()
	msgs := make([]*nats.Msg, len(payloads))
	for i, p := range payloads {
		m, err := l.newMsg(ctx, esk, p, opts)
		if err != nil {
			return BatchResult{}, err
		}
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(HeaderWriteID, writeID)
		m.Header.Set(headerBatchID, writeID)
		m.Header.Set(headerBatchSeq, strconv.Itoa(i+1))
		msgs[i] = m
	}
	msgs[len(msgs)-1].Header.Set(headerBatchCommit, "1")
	e := l.esk(esk)
	refresh := false
	var lastErr error
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 100*time.Millisecond) {
		if ctx.Err() != nil {
			return BatchResult{}, fmt.Errorf("%w: batch append to %q at %d, outcome unknown at the deadline: %v", ErrUnavailable, esk, index, lastErr)
		}
		var expect uint64
		t, known := e.tail()
		switch {
		case known && index <= t.index:
			return l.batchReadBack(ctx, e, esk, index, writeID)
		case known && index == t.index+1 && !refresh:
			expect = t.seq
		default:
			n, last, err := l.leaderTail(ctx, e)
			if err != nil {
				lastErr = err
				_ = sleepCtx(ctx, backoff)
				continue
			}
			refresh = false
			switch {
			case index < n:
				return l.batchReadBack(ctx, e, esk, index, writeID)
			case index > n:
				return BatchResult{}, &IndexAheadError{ESK: esk, Index: index, Count: n}
			case n > 0:
				expect = last.Seq
			}
		}
		msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
		lastSeq, err := l.publishBatch(ctx, esk, msgs)
		if err == nil {
			first := lastSeq - uint64(len(msgs)) + 1
			if expect == 0 {
				e.add(fact{uint64(len(msgs)) - 1, lastSeq})
			} else {
				e.advance(fact{index - 1, expect}, fact{index + uint64(len(msgs)) - 1, lastSeq})
			}
			return BatchResult{Outcome: Written, First: Position{ESK: esk, Index: index, Seq: first}}, nil
		}
		var fe *ForbiddenError
		switch {
		case errors.As(err, &fe):
			return BatchResult{}, err
		case isBatchRetry(err):
			// Nothing of it was stored: send it again.
			lastErr = err
			_ = sleepCtx(ctx, backoff)
			continue
		case isDefinite(err):
			return BatchResult{}, fmt.Errorf("transport: JetStream refused the batch for %q at %d (nothing written): %w", esk, index, err)
		}
		// A conflict, a timeout or no reply: learn what is there now.
		lastErr, refresh = err, true
		if !isConflict(err) {
			_ = sleepCtx(ctx, backoff)
		}
	}
}

// publishBatch sends msgs as one atomic batch and returns the last
// event's stream sequence: the events before the commit go out as plain
// publishes, the commit as a request whose answer is the batch's
// acknowledgement.
func (l *Log) publishBatch(ctx context.Context, esk string, msgs []*nats.Msg) (uint64, error) {
	subject := msgs[0].Subject
	gctx, release := l.denied.guard(ctx, esk, subject)
	defer release()
	for _, m := range msgs[:len(msgs)-1] {
		if err := l.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("%w: batch to %q: %v", ErrUnavailable, esk, err)
		}
	}
	// One attempt gets at most half the time left, so that a lost reply
	// leaves time to read back and retry.
	dl, _ := gctx.Deadline()
	actx, cancel := context.WithDeadline(gctx, time.Now().Add(min(2*time.Second, max(time.Until(dl)/2, time.Millisecond))))
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(actx, msgs[len(msgs)-1])
	if ferr := forbidden(gctx); ferr != nil {
		return 0, ferr
	}
	if err != nil {
		return 0, fmt.Errorf("%w: batch to %q: no acknowledgement: %v", ErrUnavailable, esk, err)
	}
	var ack struct {
		jetstream.PubAck
		Count uint64              `json:"count"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("%w: batch to %q: acknowledgement %q: %v", ErrUnavailable, esk, resp.Data, err)
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Count != uint64(len(msgs)) {
		return 0, fmt.Errorf("transport: batch to %q: %d events acknowledged of %d", esk, ack.Count, len(msgs))
	}
	return ack.Sequence, nil
}

// isBatchRetry reports an atomic batch refused as a whole for a reason
// that does not last: a message lost on the way, too many batches in
// flight.
func isBatchRetry(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeBatchIncomplete, errCodeBatchTooMany:
			return true
		}
	}
	return false
}

// batchReadBack says whether the events at index are this call's batch.
func (l *Log) batchReadBack(ctx context.Context, e *eskFacts, esk string, index uint64, writeID string) (BatchResult, error) {
	loc, found, err := l.seqOf(ctx, e, index)
	if err == nil && !found {
		err = fmt.Errorf("the leader counts %d events", loc.count)
	}
	if err != nil {
		return BatchResult{}, fmt.Errorf("transport: read back %q at %d: %w", esk, index, err)
	}
	sm := loc.msg
	if sm == nil {
		m, err := l.gets.bySeq(ctx, loc.seq)
		if err != nil {
			return BatchResult{}, fmt.Errorf("transport: read back %q at %d: %w", esk, index, err)
		}
		sm = &m
	}
	res := BatchResult{Outcome: Present, First: Position{ESK: esk, Index: index, Seq: sm.Seq}}
	if sm.Header.Get(HeaderWriteID) == writeID {
		res.Outcome = Written
	}
	return res, nil
}
