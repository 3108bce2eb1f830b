package kv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// TestStoreRestartFromSnapshot checks that a store restored from a
// snapshot, larger than a NATS message, and folding the rest holds the
// same state as one that folds the whole log.
func TestStoreRestartFromSnapshot(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	ctx := testCtx(t)
	a := open(t, l, Options{Replica: "a", SnapshotEvery: 40, SnapshotInterval: -1})
	for name, typ := range map[string]Type{"l": TypeLWW, "s": TypeORSet, "c": TypeCounter, "m": TypeMap, "v": TypeMVReg} {
		must(t)(a.CreateTable(ctx, name, typ))
	}
	big := strings.Repeat("x", 600<<10)
	for i := range 3 {
		must(t)(a.Set(ctx, "l", fmt.Sprint("big", i), big)) // the state outgrows 1 MiB
	}
	write := func(n int) {
		for i := range n {
			k := fmt.Sprint("k", i%9)
			must(t)(a.Set(ctx, "l", k, i))
			must(t)(a.Add(ctx, "s", k, fmt.Sprint(i%4)))
			must(t)(a.Incr(ctx, "c", k, int64(i)))
			must(t)(a.IncrField(ctx, "m", k, "n", 1))
			must(t)(a.Set(ctx, "v", k, i))
			if _, err := l.Write(ctx, "kv.l", []byte("garbage")); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(30)
	testnats.WaitFor(t, 20*time.Second, "a snapshot", func() error {
		if a.f.SnapshotTaken() == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	a.Close()
	// The object tells what the newest snapshot covers: Close lets a
	// snapshot being saved land, so the object does not change after it.
	obs, err := l.JetStream().ObjectStore(ctx, DefaultSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, "a")
	if err != nil || info.Size <= 1<<20 {
		t.Fatalf("snapshot object: %+v, %v; want one over 1 MiB", info, err)
	}
	snapAt, err := strconv.ParseUint(info.Metadata[fold.MetaSeq], 10, 64)
	if err != nil || snapAt == 0 || snapAt != a.f.SnapshotTaken() {
		t.Fatalf("the snapshot object covers %q, the store says %d", info.Metadata[fold.MetaSeq], a.f.SnapshotTaken())
	}
	if snapAt >= a.Applied() {
		// Make sure there is something to fold after the snapshot.
		b := open(t, l, Options{})
		must(t)(b.Set(ctx, "l", "tail", 1))
		b.Close()
	}

	restored := open(t, l, Options{})
	if got := restored.Restored(); got != snapAt {
		t.Errorf("restored at seq %d, the snapshot covers %d", got, snapAt)
	}
	replayed := open(t, l, Options{NoRestore: true})
	for _, s := range []*Store{restored, replayed} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if dr, dp := dump(t, restored), dump(t, replayed); dr != dp {
		t.Fatalf("restored state differs from replayed state:\n%.2000s\n%.2000s", dr, dp)
	}

	// A newer snapshot that does not match its hash is skipped, with a
	// warning, in favour of the valid one.
	meta := info.ObjectMeta
	meta.Name = "corrupt"
	meta.Metadata = map[string]string{}
	for k, v := range info.Metadata {
		meta.Metadata[k] = v
	}
	meta.Metadata[fold.MetaSeq] = fmt.Sprint(restored.Applied())
	if _, err := obs.Put(ctx, meta, bytes.NewReader([]byte("{}"))); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	again := open(t, l, Options{Logger: newTestLogger(&logs)})
	if got := again.Restored(); got != snapAt {
		t.Errorf("with a corrupt newer snapshot, restored at %d, want %d", got, snapAt)
	}
	if !strings.Contains(logs.String(), "does not match its hash") {
		t.Errorf("no warning about the corrupt snapshot: %s", logs.String())
	}
}

func TestStoreSnapshotNow(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	ctx := testCtx(t)
	a := open(t, l, Options{Replica: "a"})
	must(t)(a.CreateTable(ctx, "t", TypeLWW))
	p := must(t)(a.Set(ctx, "t", "k", 1))
	seq, err := a.Snapshot(ctx)
	if err != nil || seq != p.Seq {
		t.Fatalf("snapshot at %d, %v; want %d", seq, err, p.Seq)
	}
	b := open(t, l, Options{})
	if b.Restored() != p.Seq || getValue(t, b, "t", "k") != "1" {
		t.Errorf("restored at %d", b.Restored())
	}
	if _, err := l.JetStream().ObjectStore(ctx, DefaultSnapshotBucket); err != nil {
		t.Fatal(err)
	}
	// No bucket: a store folds from the start.
	if err := l.JetStream().DeleteObjectStore(ctx, DefaultSnapshotBucket); err != nil {
		t.Fatal(err)
	}
	c := open(t, l, Options{})
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if dump(t, c) != dump(t, b) {
		t.Error("a full replay differs from the restored store")
	}
	_, err = l.JetStream().ObjectStore(context.Background(), DefaultSnapshotBucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("a store without snapshots created the bucket: %v", err)
	}
}

func TestStoreSnapshotPrune(t *testing.T) {
	_, l := node(t)
	ctx := testCtx(t)
	a := open(t, l, Options{Replica: "a"})
	must(t)(a.CreateTable(ctx, "t", TypeLWW))
	if _, err := a.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	old := fold.StaleSnapshotAge
	fold.StaleSnapshotAge = 0
	t.Cleanup(func() { fold.StaleSnapshotAge = old })
	b := open(t, l, Options{Replica: "b"})
	must(t)(b.Set(ctx, "t", "k", 1))
	if _, err := b.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	obs, err := l.JetStream().ObjectStore(ctx, DefaultSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := obs.List(ctx)
	if err != nil || len(infos) != 1 || infos[0].Name != "b" {
		t.Fatalf("objects after pruning: %v, %v", infos, err)
	}
}

func TestOpenOptions(t *testing.T) {
	_, l := node(t)
	for _, opts := range []Options{{Snapshots: "a.b"}, {Snapshots: "x y"}, {Replica: "\xff"}} {
		if _, err := Open(testCtx(t), l, opts); !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("%+v: %v, want ErrInvalidOption", opts, err)
		}
	}
}

// TestForgedSnapshotNotRestored: someone who may write the snapshot bucket
// rewrites the newest snapshot, hash and all, so that a key holds a value
// the log never held. A store opening afterwards does not restore it (the
// log holds no claim of its hash) and folds the log instead.
func TestForgedSnapshotNotRestored(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	ctx := testCtx(t)
	a := open(t, l, Options{Replica: "node"})
	must(t)(a.CreateTable(ctx, "users", TypeLWW))
	must(t)(a.Set(ctx, "users", "root", "alice"))
	seq, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	obs, err := l.Objects(ctx, DefaultSnapshotBucket, "", false)
	if err != nil {
		t.Fatal(err)
	}
	data, info, err := obs.Get(ctx, "node")
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.ReplaceAll(data, []byte(`"alice"`), []byte(`"mallory"`))
	if bytes.Equal(forged, data) {
		t.Fatalf("the snapshot holds no \"alice\": %s", data)
	}
	sum := sha256.Sum256(forged)
	info.Metadata[fold.MetaHash] = hex.EncodeToString(sum[:])
	if err := obs.Put(ctx, "node", "forged", info.Metadata, forged); err != nil {
		t.Fatal(err)
	}
	b := open(t, l, Options{Replica: "node"})
	if b.Restored() != 0 {
		t.Fatalf("restored the forged snapshot at seq %d (the real one covered %d)", b.Restored(), seq)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get("users", "root"); err != nil || string(v.Value) != `"alice"` {
		t.Fatalf("root = %s (%v), want the log's \"alice\"", v.Value, err)
	}
	// The real snapshot, once rewritten as it was, is restored again.
	if err := obs.Put(ctx, "node", "restored", map[string]string{fold.MetaFormat("kv"): info.Metadata[fold.MetaFormat("kv")], fold.MetaStream: info.Metadata[fold.MetaStream],
		fold.MetaPrefix: info.Metadata[fold.MetaPrefix], fold.MetaCreated: info.Metadata[fold.MetaCreated], fold.MetaSeq: info.Metadata[fold.MetaSeq],
		fold.MetaHash: func() string { s := sha256.Sum256(data); return hex.EncodeToString(s[:]) }()}, data); err != nil {
		t.Fatal(err)
	}
	if c := open(t, l, Options{Replica: "node"}); c.Restored() != seq {
		t.Fatalf("the real snapshot was not restored: %d, want %d", c.Restored(), seq)
	}
}
