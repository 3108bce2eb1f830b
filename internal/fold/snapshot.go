package fold

import (
	"context"
	"time"
)

// snapshotCount counts n events applied and asks for a snapshot when
// SnapshotEvery are due.
func (f *Fold[O]) snapshotCount(n int) {
	if f.cfg.Snapshots == nil {
		return
	}
	if total := f.sinceSnap.Add(int64(n)); f.cfg.SnapshotEvery > 0 && total >= int64(f.cfg.SnapshotEvery) && !f.snapHeld.Load() {
		f.askSnapshot()
	}
}

func (f *Fold[O]) askSnapshot() {
	select {
	case f.snapDue <- struct{}{}:
	default:
	}
}

// HoldSnapshots stops automatic snapshots until ReleaseSnapshots: a
// client catching up with a long history would spend more on snapshots
// taken one after another than on the fold.
func (f *Fold[O]) HoldSnapshots() { f.snapHeld.Store(true) }

// ReleaseSnapshots lets automatic snapshots be taken again, at once if
// SnapshotEvery events were applied while they were held.
func (f *Fold[O]) ReleaseSnapshots() {
	f.snapHeld.Store(false)
	if f.cfg.SnapshotEvery > 0 && f.sinceSnap.Load() >= int64(f.cfg.SnapshotEvery) {
		f.askSnapshot()
	}
}

// snapshotLoop takes a snapshot when SnapshotEvery events were applied,
// or SnapshotInterval after the last one if events were applied since,
// until the fold closes.
func (f *Fold[O]) snapshotLoop() {
	defer f.loops.Done()
	var tick <-chan time.Time
	if f.cfg.SnapshotInterval > 0 {
		t := time.NewTicker(f.cfg.SnapshotInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.snapDue:
		case <-tick:
		}
		if f.ctx.Err() != nil || f.snapHeld.Load() || f.sinceSnap.Swap(0) == 0 {
			continue
		}
		// Close does not cut a save short but waits for it: a save
		// cancelled half-way may still land after its error (NATS stores
		// messages whose acknowledgement nobody waited for), changing the
		// stored snapshot after Close returned.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), f.cfg.SnapshotTimeout)
		_, err := f.Snapshot(ctx)
		cancel()
		if err != nil {
			f.lg.Warn(f.cfg.Name+": snapshot failed", "replica", f.cfg.Snapshots.Replica(), "err", err)
		}
	}
}

// Snapshot saves a snapshot of the state now, unless one at the same
// sequence was saved or restored already, and returns the sequence it
// covers (0 before the first event, saving nothing). Snapshots are taken
// one at a time. It may be called at any time, after Close too.
//
// Errors: Encode's, and those of [SnapshotStore.Save].
func (f *Fold[O]) Snapshot(ctx context.Context) (uint64, error) {
	if f.cfg.Snapshots == nil {
		return 0, ErrInvalidConfig
	}
	f.snapMu.Lock()
	defer f.snapMu.Unlock()
	f.cfg.Mu.RLock()
	seq := f.curs[0].folded
	f.cfg.Mu.RUnlock()
	if seq == f.snapTaken.Load() {
		return seq, nil
	}
	data, seq, err := f.cfg.Encode()
	if err != nil {
		return 0, err
	}
	if seq == f.snapTaken.Load() {
		return seq, nil
	}
	if err := f.cfg.Snapshots.Save(ctx, data, seq); err != nil {
		return 0, err
	}
	f.snapTaken.Store(seq)
	return seq, nil
}

// SnapshotTaken returns the sequence of the newest snapshot saved, or
// restored at Start.
func (f *Fold[O]) SnapshotTaken() uint64 { return f.snapTaken.Load() }
