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
// from 0, learned by walking the subject forward with batched direct gets.
// Because the stream denies delete and purge, a message's index never
// changes once it is stored, and every replica holding a message holds all
// messages before it: whatever a walk returns is a fact, even from a
// lagging replica. A walk that ends early only means "not there yet".
type eskDir struct {
	subject string

	mu      sync.Mutex
	seqs    []uint64 // seqs[i] is the stream sequence of index i
	scanned uint64   // the list is complete for stream positions <= scanned
}

// snapshot returns the known count and the sequence of the last known
// index (0 when none).
func (d *eskDir) snapshot() (count, last uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.countLastLocked()
}

func (d *eskDir) countLastLocked() (count, last uint64) {
	if n := len(d.seqs); n > 0 {
		return uint64(n), d.seqs[n-1]
	}
	return 0, 0
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

// appended records that an append conditioned on the subject's last
// sequence being expectLast was stored at seq: no other message of the
// subject lies between them.
func (d *eskDir) appended(expectLast, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, last := d.countLastLocked(); last == expectLast && d.scanned <= seq && seq > last {
		d.seqs = append(d.seqs, seq)
		d.scanned = seq
	}
}

// walk extends the list until done reports true (checked under the lock
// before each batch) or the subject has nothing more on the replica that
// answered. It reports whether done was reached.
func (d *eskDir) walk(ctx context.Context, g *directGetter, done func() bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !done() {
		msgs, end, _, err := g.do(ctx, directGetRequest{
			Seq: d.scanned + 1, NextFor: d.subject, Batch: walkBatch, MaxBytes: walkMaxBytes,
		})
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Subject != d.subject || m.Seq <= d.scanned {
				return false, fmt.Errorf("transport: walking %s: reply for %s at %d after %d", d.subject, m.Subject, m.Seq, d.scanned)
			}
			d.seqs = append(d.seqs, m.Seq)
			d.scanned = m.Seq
		}
		if end {
			return done(), nil
		}
	}
	return true, nil
}

// indexOf returns the index of the message stored at seq on this subject,
// walking as needed. A replica that does not have seq yet is asked again
// until ctx ends.
func (d *eskDir) indexOf(ctx context.Context, g *directGetter, seq uint64) (uint64, error) {
	for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
		ok, err := d.walk(ctx, g, func() bool { return d.scanned >= seq })
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
