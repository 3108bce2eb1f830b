package transport

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

const (
	walkBatch    = 1000
	walkMaxBytes = 8 << 20
)

// eskDir is what a Log knows of one ESK: the stream sequence of each index
// from 0. It learns them from facts about the stored log:
//   - links: a conditional append that expected prev as the subject's last
//     sequence and was stored at seq, or two consecutive messages of the
//     subject in an ordered consumer, say that seq directly follows prev;
//   - walks: batched direct gets of the subject's messages after the last
//     known one. Because the stream denies delete and purge, every replica
//     holding a message holds all messages before it, so whatever a walk
//     returns is a fact even from a lagging replica; a walk that ends early
//     only means "not there yet".
type eskDir struct {
	subject string

	mu   sync.Mutex
	seqs []uint64 // seqs[i] is the stream sequence of index i
}

// snapshot returns the known count and the sequence of the last known
// index (0 when none).
func (d *eskDir) snapshot() (count, last uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return uint64(len(d.seqs)), d.lastLocked()
}

func (d *eskDir) lastLocked() uint64 {
	if n := len(d.seqs); n > 0 {
		return d.seqs[n-1]
	}
	return 0
}

// seqOf returns the stream sequence of index i if it is known.
func (d *eskDir) seqOf(i uint64) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i < uint64(len(d.seqs)) {
		return d.seqs[i], true
	}
	return 0, false
}

// link records that the message stored at seq directly follows the one at
// prev on this subject (prev 0: it is the subject's first message). A link
// that does not continue the known list is dropped: a walk will learn it.
func (d *eskDir) link(prev, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev == d.lastLocked() && seq > prev {
		d.appendLocked(seq)
	}
}

func (d *eskDir) appendLocked(seq uint64) { d.seqs = append(d.seqs, seq) }

// walk extends the list until done reports true (checked under the lock
// before each batch) or the subject has nothing more on the replica that
// answered. It reports whether done was reached.
func (d *eskDir) walk(ctx context.Context, g *directGetter, done func() bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !done() {
		last := d.lastLocked()
		rep, err := g.do(ctx, directGetRequest{
			Seq: last + 1, NextFor: d.subject, Batch: walkBatch, MaxBytes: walkMaxBytes,
		})
		if err != nil {
			return false, err
		}
		for _, m := range rep.msgs {
			if m.Subject != d.subject || m.Seq <= d.lastLocked() {
				return false, fmt.Errorf("transport: walking %s: reply for %s at %d after %d", d.subject, m.Subject, m.Seq, d.lastLocked())
			}
			d.appendLocked(m.Seq)
		}
		if rep.end {
			return done(), nil
		}
	}
	return true, nil
}

// confirmRun learns the indices of seqs, acknowledged writes to this
// subject in increasing order, with one request that returns no headers:
// it asks for the next len(seqs) messages after the last known one and
// checks that the last of them is the last of seqs. Then those messages are
// exactly seqs, since all of seqs lie in that range. It reports false,
// learning nothing, when another message is interleaved or the answering
// replica is behind; [eskDir.indexOf] then walks.
func (d *eskDir) confirmRun(ctx context.Context, g *directGetter, seqs []uint64, maxBytes int) (first uint64, ok bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	last := d.lastLocked()
	if len(seqs) == 0 || seqs[0] <= last || !slices.IsSorted(seqs) {
		return 0, false, nil
	}
	rep, err := g.do(ctx, directGetRequest{Seq: last + 1, NextFor: d.subject, Batch: len(seqs), MaxBytes: maxBytes, NoHeaders: true})
	if err != nil || rep.count != len(seqs) || rep.lastSeq != seqs[len(seqs)-1] {
		return 0, false, err
	}
	first = uint64(len(d.seqs))
	d.seqs = append(d.seqs, seqs...)
	return first, true, nil
}

// indexOf returns the index of the message stored at seq on this subject,
// walking as needed; a replica that does not have seq yet is asked again until ctx
// ends.
func (d *eskDir) indexOf(ctx context.Context, g *directGetter, seq uint64) (uint64, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		ok, err := d.walk(ctx, g, func() bool { return d.lastLocked() >= seq })
		if err != nil {
			return 0, err
		}
		if ok {
			break
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return 0, fmt.Errorf("%w: index of sequence %d on %s: %v", ErrUnavailable, seq, d.subject, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, found := slices.BinarySearch(d.seqs, seq)
	if !found {
		return 0, fmt.Errorf("transport: stream sequence %d is not on %s", seq, d.subject)
	}
	return uint64(i), nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
