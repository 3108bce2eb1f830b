package transport

import (
	"context"
	"fmt"
	"time"
)

// MaxRange is the most events one [Log.Range] returns.
const MaxRange = 1000

// rangeMaxBytes bounds the bytes of one Range's reply: with payloads of
// 1 MiB, a range stops after about 8 events, and the caller asks on from
// there.
const rangeMaxBytes = 8 << 20

// Range returns up to n consecutive events of esk from index from, with
// their headers and payloads, and the ESK's count as the stream leader
// counts it. It returns fewer than n events at the end of the ESK, and
// when the events would make a reply of more than 8 MiB (ask again from
// the index after the last one); none when from is not below the count.
// Its cost does not grow with the ESK's length: finding the index as
// [Log.Get] does, then one batched direct get.
//
// Errors: [ErrInvalidESK]; [ErrInvalidOption] for n outside 1 to
// [MaxRange]; [ErrUnavailable].
func (l *Log) Range(ctx context.Context, esk string, from uint64, n int) ([]Event, uint64, error) {
	if err := ValidateESK(esk); err != nil {
		return nil, 0, err
	}
	if n < 1 || n > MaxRange {
		return nil, 0, fmt.Errorf("%w: %d events: want 1 to %d", ErrInvalidOption, n, MaxRange)
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	e := l.esk(esk)
	count, _, err := l.leaderCount(ctx, e.subject)
	if err != nil || from >= count {
		return nil, count, err
	}
	loc, found, err := l.seqOf(ctx, e, from)
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, loc.count, nil
	}
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		rep, err := l.gets.do(ctx, directGetRequest{Seq: loc.seq, NextFor: e.subject, Batch: n, MaxBytes: rangeMaxBytes})
		if err != nil {
			return nil, 0, err
		}
		if len(rep.msgs) > 0 && rep.msgs[0].Seq == loc.seq {
			out := make([]Event, len(rep.msgs))
			for k, m := range rep.msgs {
				out[k] = toEvent(esk, from+uint64(k), m.Seq, m.Time, m.Header, m.Data)
			}
			last := out[len(out)-1]
			e.add(fact{last.Index, last.Seq})
			return out, max(count, last.Index+1), nil
		}
		// A replica that does not hold the event yet: ask again.
		if err := sleepCtx(ctx, backoff); err != nil {
			return nil, 0, fmt.Errorf("%w: events of %s from index %d: %v", ErrUnavailable, esk, from, err)
		}
	}
}

// Seek returns the first event of esk stored at or after stream position
// seq (0 counts as 1), with its index: where a reader that knows a
// position in the log's total order starts reading one ESK. It costs a
// direct get and the lookup of [Log.IndexOf], whatever the log's length.
//
// Errors: [ErrInvalidESK]; [ErrNotFound] when the stream leader holds no
// event of esk at or after seq; [ErrUnavailable].
func (l *Log) Seek(ctx context.Context, esk string, seq uint64) (Event, error) {
	if err := ValidateESK(esk); err != nil {
		return Event{}, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	e := l.esk(esk)
	seq = max(seq, 1)
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		rep, err := l.gets.do(ctx, directGetRequest{Seq: seq, NextFor: e.subject})
		if err != nil {
			return Event{}, err
		}
		if len(rep.msgs) == 1 {
			m := rep.msgs[0]
			index, err := l.indexOf(ctx, e, m.Seq)
			if err != nil {
				return Event{}, err
			}
			return toEvent(esk, index, m.Seq, m.Time, m.Header, m.Data), nil
		}
		// Nothing at or after seq on the server that answered: the end of
		// the ESK, if the stream leader agrees, or a replica behind.
		last, found, err := l.leaderLast(ctx, e.subject)
		if err != nil {
			return Event{}, err
		}
		if !found || last.Seq < seq {
			where := "it holds no event"
			if found {
				where = fmt.Sprintf("its last event is at position %d", last.Seq)
			}
			return Event{}, fmt.Errorf("%w: no event of %s at or after position %d: %s", ErrNotFound, esk, seq, where)
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return Event{}, fmt.Errorf("%w: the event of %s at or after position %d: %v", ErrUnavailable, esk, seq, err)
		}
	}
}
