package transform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSnapshotRestoreThenReplay: an instance that starts from a snapshot
// replays only the inputs after it, and ends in the same state as a full
// replay; both runs' snapshots of the same position agree.
func TestSnapshotRestoreThenReplay(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	store, err := transform.OpenSnapshotStore(ctxT(t), l, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := sumSpec("snap", "snap.out")
	last := writeInputs(t, l, 0, 100)
	first := start(t, url, transform.Config{Spec: spec, Instance: "first", Snapshots: store, SnapshotEvery: 25})
	want, _ := expected(100)
	waitOutputs(t, l, "snap.out", want)
	testnats.WaitFor(t, 10*time.Second, "snapshot at the last input", func() error {
		if s, ok, err := store.Latest(ctxT(t), spec); err != nil || !ok || s.InputSeq != last {
			return fmt.Errorf("%+v %v %v", s.InputSeq, ok, err)
		}
		return nil
	})
	first.halt(t)

	last = writeInputs(t, l, 100, 40)
	second := start(t, url, transform.Config{Spec: spec, Instance: "second", Snapshots: store, SnapshotEvery: 20})
	want, _ = expected(140)
	waitOutputs(t, l, "snap.out", want)
	testnats.WaitFor(t, 10*time.Second, "second caught up", func() error {
		if st := second.r.Status(); st.InputSeq < last {
			return fmt.Errorf("at %d", st.InputSeq)
		}
		return nil
	})
	if st := second.r.Status(); st.Inputs != 40 {
		t.Fatalf("restored instance applied %d inputs, want only the 40 after the snapshot", st.Inputs)
	}
	// The snapshot at the last input follows once its outputs settled.
	var latest transform.Snapshot
	testnats.WaitFor(t, 10*time.Second, "a snapshot at the last input", func() error {
		s, ok, err := store.Latest(ctxT(t), spec)
		if err != nil || !ok || s.InputSeq != last {
			return fmt.Errorf("latest snapshot at %d (%v, %v), want %d", s.InputSeq, ok, err, last)
		}
		latest = s
		return nil
	})
	// A full replay of the same inputs, offline, reaches the same bytes.
	full := spec.New()
	for ev, err := range l.Events(ctxT(t), spec.Inputs, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, Data: ev.Data}
		_, _ = full.Step(transform.NewContext(in), in)
	}
	state, _ := full.Snapshot()
	if string(state) != string(latest.State) {
		t.Fatalf("restore+replay state\n%s\nfull replay state\n%s", latest.State, state)
	}
	// A third instance starting at the same snapshot saves the same
	// position again and agrees with the stored one.
	third := start(t, url, transform.Config{Spec: spec, Instance: "third", Snapshots: store, SnapshotEvery: 1})
	writeInputs(t, l, 140, 1)
	testnats.WaitFor(t, 10*time.Second, "third snapshots", func() error {
		if st := third.r.Status(); st.LastSnapshot.IsZero() {
			return errors.New("none yet")
		}
		return nil
	})
	if st := third.r.Status(); len(st.Divergences) != 0 {
		t.Fatalf("snapshots of one position disagree: %v", st.Divergences)
	}
}

func TestSnapshotOfAnotherVersionIsRefused(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	store, err := transform.OpenSnapshotStore(ctxT(t), l, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := sumSpec("ver", "ver.out")
	writeInputs(t, l, 0, 5)
	v1 := start(t, s.ClientURL(), transform.Config{Spec: spec, Snapshots: store, SnapshotEvery: 1})
	testnats.WaitFor(t, 10*time.Second, "a snapshot", func() error {
		if _, ok, err := store.Latest(ctxT(t), spec); !ok || err != nil {
			return fmt.Errorf("%v %v", ok, err)
		}
		return nil
	})
	v1.halt(t)
	spec.Version = "2"
	r, err := transform.NewRunner(transform.Config{Spec: spec, Log: l, Snapshots: store, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, transform.ErrSnapshotVersion) || !strings.Contains(err.Error(), `is version "1", this is version "2"`) {
		t.Fatalf("version 2 over a version 1 snapshot: %v", err)
	}
}

// TestSnapshotStoreKeepsTheNewest: saving snapshot after snapshot leaves
// only the newest few of a DET in the bucket, with no trace of the older
// ones, so finding the newest does not grow with the DET's history; other
// DETs' snapshots are left alone.
func TestSnapshotStoreKeepsTheNewest(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	store, err := transform.OpenSnapshotStore(ctx, l, "")
	if err != nil {
		t.Fatal(err)
	}
	a, b := sumSpec("keep-a", "keep.a.out"), sumSpec("keep-b", "keep.b.out")
	if _, _, err := store.Save(ctx, transform.NewSnapshot(b, 1, 0, 0, []byte(`{}`)), "test"); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 40; seq++ {
		if _, agree, err := store.Save(ctx, transform.NewSnapshot(a, seq, seq, 0, []byte(fmt.Sprint(seq))), "test"); err != nil || !agree {
			t.Fatalf("save %d: %v %v", seq, agree, err)
		}
	}
	bucket, err := l.BindBucket(ctx, transform.DefaultSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := bucket.Keys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 { // a's newest three and b's one
		t.Fatalf("the bucket holds %d keys: %v", len(keys), keys)
	}
	latest, ok, err := store.Latest(ctx, a)
	if err != nil || !ok || latest.InputSeq != 40 {
		t.Fatalf("latest of a: %d %v %v", latest.InputSeq, ok, err)
	}
	js, err := jetstream.New(testnats.Conn(t, s.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := js.Stream(ctx, "KV_"+transform.DefaultSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	if n := bs.CachedInfo().State.Msgs; n != 4 {
		t.Fatalf("the bucket's stream holds %d messages, want 4: old snapshots left traces", n)
	}
}

// padDET is sumDET whose state carries pad bytes of deterministic
// padding: a state of any size.
type padDET struct {
	*sumDET
	pad int
}

func (p *padDET) Snapshot() ([]byte, error) {
	return json.Marshal(struct {
		*sumDET
		Pad string `json:"pad"`
	}{p.sumDET, strings.Repeat("p", p.pad)})
}

func (p *padDET) Restore(b []byte) error {
	var v struct {
		Totals map[string]int64 `json:"totals"`
		Steps  int64            `json:"steps"`
		Pad    string           `json:"pad"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p.Totals, p.Steps, p.pad = v.Totals, v.Steps, len(v.Pad)
	return nil
}

// TestLargeSnapshot: a state of 3 MiB, over a message's limit, is saved
// in the object bucket and restored from it; a state object changed
// behind the store's back is not a restore point; pruning removes the
// objects of old snapshots.
func TestLargeSnapshot(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	store, err := transform.OpenSnapshotStore(ctx, l, "")
	if err != nil {
		t.Fatal(err)
	}
	const pad = 3 << 20
	spec := sumSpec("big", "big.out")
	spec.New = func() transform.Transform { return &padDET{sumDET: &sumDET{Totals: map[string]int64{}}, pad: pad} }
	last := writeInputs(t, l, 0, 30)
	first := start(t, url, transform.Config{Spec: spec, Instance: "first", Snapshots: store, SnapshotEvery: 10})
	var snap transform.Snapshot
	testnats.WaitFor(t, time.Minute, "a snapshot at the last input", func() error {
		s, ok, err := store.Latest(ctx, spec)
		if err != nil || !ok || s.InputSeq != last {
			return fmt.Errorf("%d %v %v", s.InputSeq, ok, err)
		}
		snap = s
		return nil
	})
	first.halt(t)
	if len(snap.State) < pad || snap.Object == "" {
		t.Fatalf("snapshot of %d bytes, object %q: want the state in the object bucket", len(snap.State), snap.Object)
	}
	objs, err := l.Objects(ctx, transform.DefaultSnapshotBucket+"-states", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := objs.List(ctx); err != nil || len(list) != 3 {
		t.Fatalf("state objects %v %v: want the newest three snapshots' only", list, err)
	}
	// Restored from the object: the second instance applies only the
	// inputs after it.
	last = writeInputs(t, l, 30, 5)
	second := start(t, url, transform.Config{Spec: spec, Instance: "second", Snapshots: store, SnapshotEvery: 1000})
	st := settled(t, second, last)
	if st.Inputs != 5 {
		t.Fatalf("restored instance applied %d inputs, want the 5 after the snapshot", st.Inputs)
	}
	second.halt(t)
	// A forged state object: same name, other bytes. The snapshot is
	// skipped for the one before it.
	forged := bytes.Repeat([]byte("x"), pad)
	if err := objs.Put(ctx, snap.Object, "", nil, forged); err != nil {
		t.Fatal(err)
	}
	older, ok, err := store.Latest(ctx, spec)
	if err != nil || !ok || older.InputSeq >= snap.InputSeq {
		t.Fatalf("after forging the newest state: latest at %d (%v %v), want an older one than %d", older.InputSeq, ok, err, snap.InputSeq)
	}
}
