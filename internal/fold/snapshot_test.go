package fold_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// openTallySnapshots opens the tally's snapshot store on l.
func openTallySnapshots(t testing.TB, l *transport.Log, replica string, lg *slog.Logger) *fold.SnapshotStore {
	t.Helper()
	sn, err := fold.OpenSnapshots(ctxT(t), l, fold.SnapshotConfig{Kind: "tally", What: "test tally", Bucket: "tally-snapshots", Replica: replica, Format: 1, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

// openTally restores the newest valid tally snapshot on a new Log (so
// that its read statistics are its own) and starts folding after it.
func openTally(t testing.TB, url string, replica string, lg *slog.Logger, restore bool) (*tally, *fold.Fold[int64], *transport.Log, uint64) {
	t.Helper()
	l := testnats.Log(t, url, transport.Config{})
	sn := openTallySnapshots(t, l, replica, lg)
	c, at := newTally(1), uint64(0)
	if restore {
		if st, seq, ok := fold.Restore(ctxT(t), sn, decodeTally, nil); ok {
			c, at = st, seq
		}
	}
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{fold.LogSource(l, "t.>")}, Snapshots: sn, Encode: c.encode}, []uint64{at})
	return c, f, l, at
}

// TestRestartFromSnapshot folds a log of realistic size, snapshots it,
// and restarts from the snapshot: the restarted fold reads only the
// events after it and reaches the state of a fold from the start. A
// snapshot that does not match its hash, or that the log's claims do not
// confirm, is skipped with a warning.
func TestRestartFromSnapshot(t *testing.T) {
	t.Parallel()
	n := 200_000
	if testnats.Race || testing.Short() {
		n = 20_000
	}
	url, l := node(t)
	ctx := ctxT(t)
	err := testnats.Publish(ctx, url, n, func(i int) (string, []byte) {
		switch {
		case i%10 == 9:
			return l.Subject("other.k" + strconv.Itoa(i%7)), []byte("1")
		case i%1000 == 0:
			return l.Subject("t.k" + strconv.Itoa(i%100)), []byte("not a number")
		}
		return l.Subject("t.k" + strconv.Itoa(i%100)), []byte(strconv.Itoa(i % 13))
	})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	a, fa, _, _ := openTally(t, url, "a", nil, false)
	if err := fa.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("folded %d events in %v", n, time.Since(begin).Round(time.Millisecond))
	snapAt, err := fa.Snapshot(ctx)
	if err != nil || snapAt != fa.Applied(0) || snapAt == 0 {
		t.Fatalf("snapshot at %d (%v), applied %d", snapAt, err, fa.Applied(0))
	}
	if again, err := fa.Snapshot(ctx); err != nil || again != snapAt {
		t.Fatalf("a second snapshot of the same state: %d, %v", again, err)
	}
	const tail = 50
	for i := range tail {
		write(t, l, "t.k"+strconv.Itoa(i%3), strconv.Itoa(i))
		write(t, l, "other.k1", "1")
	}
	if err := fa.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	begin = time.Now()
	b, fb, lb, at := openTally(t, url, "b", nil, true)
	if at != snapAt {
		t.Fatalf("restored at %d, want the snapshot at %d", at, snapAt)
	}
	if err := fb.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restored at seq %d and folded the tail in %v", at, time.Since(begin).Round(time.Millisecond))
	if got := lb.ReadStats().Delivered; got != tail {
		t.Errorf("the restored fold read %d events, want the %d after the snapshot", got, tail)
	}
	full, ff, _, _ := openTally(t, url, "full", nil, false)
	if err := ff.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if sa, sb, sf := a.state(), b.state(), full.state(); sa != sb || sb != sf {
		t.Fatalf("states differ:\nfirst    %s\nrestored %s\nfull     %s", sa, sb, sf)
	}
	b.check(t)

	// Newer snapshots that do not match their hash, or that no claim in
	// the log confirms, are skipped in favour of the valid one.
	obs, err := l.Objects(ctx, "tally-snapshots", "", false)
	if err != nil {
		t.Fatal(err)
	}
	data, info, err := obs.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	newer := strconv.FormatUint(fb.Applied(0), 10)
	forged := bytes.Replace(data, []byte(`"seq":`+strconv.FormatUint(snapAt, 10)), []byte(`"seq":`+newer), 1)
	for name, c := range map[string]struct {
		data []byte
		hash string
	}{
		"bad-hash": {forged, strings.Repeat("0", 64)},
		"forged":   {forged, ""},
	} {
		meta := maps.Clone(info.Metadata)
		meta[fold.MetaSeq] = newer
		sum := sha256.Sum256(c.data)
		meta[fold.MetaHash] = hex.EncodeToString(sum[:])
		if c.hash != "" {
			meta[fold.MetaHash] = c.hash
		}
		if err := obs.Put(ctx, name, "", meta, c.data); err != nil {
			t.Fatal(err)
		}
		var logs testnats.SyncBuffer
		_, _, _, at := openTally(t, url, "c", slog.New(slog.NewTextHandler(&logs, nil)), true)
		if at != snapAt {
			t.Errorf("%s: restored at %d, want the valid snapshot's %d", name, at, snapAt)
		}
		want := map[string]string{"bad-hash": "does not match its hash", "forged": "the log does not confirm"}[name]
		if !strings.Contains(logs.String(), want) {
			t.Errorf("%s: no warning %q: %s", name, want, logs.String())
		}
		if err := obs.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotsAutomatic: a fold snapshots every SnapshotEvery events,
// none while snapshots are held, and one at release when they are due.
func TestSnapshotsAutomatic(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	c := newTally(1)
	sn := openTallySnapshots(t, l, "auto", nil)
	f, err := fold.New(fold.Config[int64]{Name: "test", Sources: []fold.Source{fold.LogSource(l, "t.>")}, Mu: &c.mu, Apply: c.apply,
		Snapshots: sn, Encode: c.encode, SnapshotEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.HoldSnapshots()
	f.Start(nil)
	var last transport.Position
	for i := range 25 {
		last = write(t, l, "t.a", strconv.Itoa(i))
	}
	if err := f.Wait(ctxT(t), 0, last.Seq); err != nil {
		t.Fatal(err)
	}
	if got := f.SnapshotTaken(); got != 0 {
		t.Fatalf("a snapshot at %d while held", got)
	}
	f.ReleaseSnapshots()
	testnats.WaitFor(t, 30*time.Second, "the snapshot due at release", func() error {
		if got := f.SnapshotTaken(); got != last.Seq {
			return fmt.Errorf("snapshot at %d, want %d", got, last.Seq)
		}
		return nil
	})
	// Each snapshot's claim is an event of the log, outside "t.>".
	for range 10 {
		last = write(t, l, "t.a", "1")
	}
	testnats.WaitFor(t, 30*time.Second, "a snapshot by count", func() error {
		if got := f.SnapshotTaken(); got != last.Seq {
			return fmt.Errorf("snapshot at %d, want %d", got, last.Seq)
		}
		return nil
	})
	f.Close()
	if _, err := f.Snapshot(context.Background()); err != nil {
		t.Errorf("a snapshot after Close: %v", err)
	}
}
