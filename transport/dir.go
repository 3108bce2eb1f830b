package transport

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	walkBatch    = 1000
	walkMaxBytes = 8 << 20
	// linkWait is how long indexOf waits for the server's republished link
	// of a just-acknowledged message before walking the subject instead.
	linkWait = 250 * time.Millisecond
	// maxPendingLinks bounds links held while an earlier one is missing.
	maxPendingLinks = 4096
)

// eskDir is what a Log knows of one ESK: the stream sequence of each index
// from 0. It learns them three ways, each a fact about the stored log:
//   - links: the stream republishes a header-only notice of every stored
//     message with the sequence of the previous message on the same
//     subject, so (seq, prev) extends the list when prev is its last entry;
//   - conditional appends: a publish that expected prev as the subject's
//     last sequence and was stored at seq is the same kind of link;
//   - walks: batched direct gets of the subject's messages after the last
//     known one. Because the stream denies delete and purge, every replica
//     holding a message holds all messages before it, so whatever a walk
//     returns is a fact even from a lagging replica; a walk that ends early
//     only means "not there yet".
type eskDir struct {
	subject string

	mu      sync.Mutex
	seqs    []uint64          // seqs[i] is the stream sequence of index i
	pending map[uint64]uint64 // links waiting for their predecessor: prev -> seq
	wake    chan struct{}     // closed when seqs grows, if someone waits
	links   *nats.Subscription
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
// prev on this subject (prev 0: it is the subject's first message).
func (d *eskDir) link(prev, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.linkLocked(prev, seq)
}

func (d *eskDir) linkLocked(prev, seq uint64) {
	last := d.lastLocked()
	switch {
	case seq <= last:
		return
	case prev != last:
		if prev > last {
			if len(d.pending) >= maxPendingLinks {
				clear(d.pending)
			}
			if d.pending == nil {
				d.pending = map[uint64]uint64{}
			}
			d.pending[prev] = seq
		}
		return
	}
	d.appendLocked(seq)
	for next, ok := d.pending[seq]; ok; next, ok = d.pending[seq] {
		delete(d.pending, seq)
		seq = next
		d.appendLocked(seq)
	}
}

func (d *eskDir) appendLocked(seq uint64) {
	d.seqs = append(d.seqs, seq)
	if d.wake != nil {
		close(d.wake)
		d.wake = nil
	}
}

// onLink handles a republished notice of a stored message.
func (d *eskDir) onLink(m *nats.Msg) {
	seq, err1 := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	prev, err2 := strconv.ParseUint(m.Header.Get("Nats-Last-Sequence"), 10, 64)
	if err1 == nil && err2 == nil {
		d.link(prev, seq)
	}
}

// walk extends the list until done reports true (checked under the lock
// before each batch) or the subject has nothing more on the replica that
// answered. It reports whether done was reached.
func (d *eskDir) walk(ctx context.Context, g *directGetter, done func() bool) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !done() {
		last := d.lastLocked()
		msgs, end, _, err := g.do(ctx, directGetRequest{
			Seq: last + 1, NextFor: d.subject, Batch: walkBatch, MaxBytes: walkMaxBytes,
		})
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Subject != d.subject || m.Seq <= d.lastLocked() {
				return false, fmt.Errorf("transport: walking %s: reply for %s at %d after %d", d.subject, m.Subject, m.Seq, d.lastLocked())
			}
			d.appendLocked(m.Seq)
		}
		if end {
			return done(), nil
		}
	}
	return true, nil
}

// indexOf returns the index of the message stored at seq on this subject.
// It waits briefly for the message's link when links are followed, then
// walks; a replica that does not have seq yet is asked again until ctx
// ends.
func (d *eskDir) indexOf(ctx context.Context, g *directGetter, seq uint64) (uint64, error) {
	d.mu.Lock()
	if d.links != nil && d.lastLocked() < seq {
		timer := time.NewTimer(linkWait)
		waiting := true
		for waiting && d.lastLocked() < seq {
			if d.wake == nil {
				d.wake = make(chan struct{})
			}
			wake := d.wake
			d.mu.Unlock()
			select {
			case <-wake:
			case <-timer.C:
				waiting = false
			case <-ctx.Done():
				waiting = false
			}
			d.mu.Lock()
		}
		timer.Stop()
	}
	d.mu.Unlock()
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
