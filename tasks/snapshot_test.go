package tasks_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// noAutoSnapshots leaves snapshots to explicit Snapshot calls.
var noAutoSnapshots = tasks.Options{SnapshotEvery: -1, SnapshotInterval: -1}

// openWith opens a client with opts on its own connection to url.
func openWith(t testing.TB, url string, opts tasks.Options) *tasks.Client {
	t.Helper()
	c, err := tasks.Open(ctxT(t), testnats.Log(t, url, transport.Config{}), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// with returns opts with the replica name and logger set.
func with(opts tasks.Options, replica string, lg *slog.Logger) tasks.Options {
	opts.Replica, opts.Logger = replica, lg
	return opts
}

// history writes n rounds of task events straight to the log: on queues
// q1 and q2 enqueues, claims, completions, failures (a task's last
// attempt fails into the dead letters), cancels, batches, malformed and
// refused operations; and malformed events on a queue never created.
// Rounds from start on name their tasks apart from earlier rounds'.
func history(t testing.TB, l *transport.Log, start, n int) {
	t.Helper()
	ctx := ctxT(t)
	write := func(esk, body string) {
		t.Helper()
		if _, err := l.Write(ctx, esk, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if start == 0 {
		write("tasks.q1", `{"op":"create_queue","lease":"1h","max_attempts":2}`)
		write("tasks.q2", `{"op":"create_queue","lease":"1h","max_attempts":1}`)
	}
	for k := start; k < start+n; k++ {
		q := "tasks.q" + strconv.Itoa(1+k%2)
		id := fmt.Sprintf("t%d", k)
		write(q, fmt.Sprintf(`{"op":"enqueue","id":%q,"priority":%d,"payload":{"k":%d}}`, id, k%3, k))
		switch k % 5 {
		case 0:
			write(q, fmt.Sprintf(`{"op":"claim","id":%q,"worker":"w%d"}`, id, k%3))
			write(q, fmt.Sprintf(`{"op":"complete","id":%q,"worker":"w%d","attempt":1,"result":{"ok":%d}}`, id, k%3, k))
		case 1:
			write(q, fmt.Sprintf(`{"op":"claim","id":%q,"worker":"w"}`, id))
			write(q, fmt.Sprintf(`{"op":"fail","id":%q,"worker":"w","attempt":1,"error":"boom %d"}`, id, k))
		case 2:
			write(q, fmt.Sprintf(`{"op":"cancel","id":%q}`, id))
			write(q, `not json at all`)
			write("tasks.junk", "") // an empty payload
		case 3:
			write(q, fmt.Sprintf(`{"op":"batch","ops":[{"op":"enqueue","id":"b%d"},{"op":"claim","id":"nope","worker":"w"},{"op":"claim","worker":"w"}]}`, k))
			write(q, fmt.Sprintf(`{"op":"complete","id":%q,"worker":"x","attempt":3}`, id)) // refused
		case 4:
			write(q, fmt.Sprintf(`{"op":"claim","id":%q,"worker":"w","lease":"2h"}`, id))
			write("tasks.junk", fmt.Sprintf(`{"op":"dance","n":%d}`, k))
		}
	}
}

// folded describes everything reads of c show: queues, tasks, claimable
// tasks, rejections.
func folded(t testing.TB, c *tasks.Client) string {
	t.Helper()
	out := map[string]any{"queues": c.Queues()}
	for _, qi := range c.Queues() {
		if qi.Created {
			out[qi.Name+"/tasks"] = must[[]machine.Task](t)(c.List(qi.Name))
			out[qi.Name+"/claimable"] = must[[]machine.Task](t)(c.Claimable(qi.Name, time.Unix(4e9, 0)))
		}
		m, r, err := c.Rejections(qi.Name)
		if err != nil {
			t.Fatal(err)
		}
		out[qi.Name+"/malformed"], out[qi.Name+"/refused"] = m, r
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshotData returns what a snapshot of c would hold now.
func snapshotData(t testing.TB, c *tasks.Client) ([]byte, uint64) {
	t.Helper()
	data, seq, err := tasks.SnapshotData(c)
	if err != nil {
		t.Fatal(err)
	}
	return data, seq
}

// sameState fails unless a and b, synced, read alike and snapshot to the
// same bytes.
func sameState(t testing.TB, a, b *tasks.Client) {
	t.Helper()
	for _, c := range []*tasks.Client{a, b} {
		if err := c.Sync(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if fa, fb := folded(t, a), folded(t, b); fa != fb {
		t.Fatalf("the clients read differently:\n%.3000s\n%.3000s", fa, fb)
	}
	da, sa := snapshotData(t, a)
	db, sb := snapshotData(t, b)
	if sa != sb || !bytes.Equal(da, db) {
		t.Fatalf("snapshots differ: seq %d, %d\n%.3000s\n%.3000s", sa, sb, da, db)
	}
}

// TestRestoreThenFold: a client that restores a snapshot and folds the
// rest holds the same state as one that folds everything, and reads only
// the events after the snapshot.
func TestRestoreThenFold(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	a := openWith(t, url, with(noAutoSnapshots, "a", nil))
	history(t, l, 0, 40)
	if err := a.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	snapAt := must[uint64](t)(a.Snapshot(ctxT(t)))
	if snapAt != a.Applied() || snapAt == 0 {
		t.Fatalf("snapshot at seq %d, applied %d", snapAt, a.Applied())
	}
	if again := must[uint64](t)(a.Snapshot(ctxT(t))); again != snapAt {
		t.Fatalf("a second snapshot of the same state covers %d", again)
	}
	before := must[transport.State](t)(l.State(ctxT(t), "tasks.>"))
	history(t, l, 40, 25)
	if _, err := l.Write(ctxT(t), "other.esk", []byte("not a task event")); err != nil {
		t.Fatal(err)
	}
	after := must[transport.State](t)(l.State(ctxT(t), "tasks.>"))
	var tail, all uint64
	for esk, n := range after.ESKs {
		tail += n - before.ESKs[esk]
		all += n
	}

	restored := openWith(t, url, noAutoSnapshots)
	if got := restored.Restored(); got != snapAt {
		t.Fatalf("restored at seq %d, the snapshot covers %d", got, snapAt)
	}
	if got := restored.Log().ReadStats().Delivered; got != tail {
		t.Errorf("the restored client read %d events, %d follow the snapshot", got, tail)
	}
	full := openWith(t, url, tasks.Options{NoRestore: true, SnapshotEvery: -1, SnapshotInterval: -1})
	if full.Restored() != 0 || full.Log().ReadStats().Delivered != all {
		t.Errorf("NoRestore: restored %d, read %d events of %d", full.Restored(), full.Log().ReadStats().Delivered, all)
	}
	sameState(t, restored, full)
	sameState(t, a, full)

	// The restored client goes on folding like the others.
	history(t, l, 65, 10)
	sameState(t, restored, full)

	// A client that keeps fewer rejections keeps the newest of those the
	// snapshot holds, and counts them all.
	few := openWith(t, url, tasks.Options{KeepRejections: 2, SnapshotEvery: -1, SnapshotInterval: -1})
	if few.Restored() != snapAt {
		t.Fatalf("restored at %d", few.Restored())
	}
	if err := few.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mFew, rFew := must2[[]tasks.Rejection, []tasks.Rejection](t)(few.Rejections("q2"))
	mAll, rAll := must2[[]tasks.Rejection, []tasks.Rejection](t)(full.Rejections("q2"))
	if len(mFew) != 2 || len(rFew) != 2 || !reflect.DeepEqual(mFew, mAll[len(mAll)-2:]) || !reflect.DeepEqual(rFew, rAll[len(rAll)-2:]) {
		t.Errorf("kept rejections:\n%+v\n%+v\nwant the last two of\n%+v\n%+v", mFew, rFew, mAll, rAll)
	}
	qf, qa := must[tasks.QueueInfo](t)(few.Queue("q2")), must[tasks.QueueInfo](t)(full.Queue("q2"))
	if qf.Malformed != qa.Malformed || qf.Refused != qa.Refused {
		t.Errorf("rejection counts %d/%d, want %d/%d", qf.Malformed, qf.Refused, qa.Malformed, qa.Refused)
	}
}

// TestSnapshotsIdentical: clients that folded the same events write the
// same bytes, whether they folded from the start or from a snapshot.
func TestSnapshotsIdentical(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	a := openWith(t, url, with(noAutoSnapshots, "a", nil))
	history(t, l, 0, 30)
	b := openWith(t, url, with(noAutoSnapshots, "b", nil))
	history(t, l, 30, 20)
	sameState(t, a, b)
	sa := must[uint64](t)(a.Snapshot(ctxT(t)))
	c := openWith(t, url, with(noAutoSnapshots, "c", nil))
	if c.Restored() != sa {
		t.Fatalf("restored at %d, want %d", c.Restored(), sa)
	}
	sameState(t, a, c)
	// Saved snapshots of the same state carry the same hash.
	if sb := must[uint64](t)(b.Snapshot(ctxT(t))); sb != sa {
		t.Fatalf("snapshots at %d and %d", sa, sb)
	}
	obs := snapshotBucket(t, l)
	ia := must[*jetstream.ObjectInfo](t)(obs.GetInfo(ctxT(t), "a"))
	ib := must[*jetstream.ObjectInfo](t)(obs.GetInfo(ctxT(t), "b"))
	if ia.Metadata[tasks.MetaHash] != ib.Metadata[tasks.MetaHash] || ia.Metadata[tasks.MetaSeq] != ib.Metadata[tasks.MetaSeq] {
		t.Fatalf("snapshot metadata differ:\n%v\n%v", ia.Metadata, ib.Metadata)
	}
}

// snapshotBucket returns the default snapshot bucket of l's node.
func snapshotBucket(t testing.TB, l *transport.Log) jetstream.ObjectStore {
	t.Helper()
	obs, err := l.JetStream().ObjectStore(ctxT(t), tasks.DefaultSnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// TestInvalidSnapshotsSkipped: a snapshot newer than a valid one is
// skipped, with a warning, when it does not match its hash, belongs to
// another incarnation of the stream, lies past the stream's end, does
// not decode, or does not match the log; one of another stream is
// ignored. The client restores the valid one and reaches the same state.
func TestInvalidSnapshotsSkipped(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	history(t, l, 0, 20)
	a := openWith(t, url, with(noAutoSnapshots, "a", nil))
	valid := must[uint64](t)(a.Snapshot(ctx))
	history(t, l, 20, 20)
	full := openWith(t, url, tasks.Options{NoRestore: true, SnapshotEvery: -1, SnapshotInterval: -1})

	obs := snapshotBucket(t, l)
	info := must[*jetstream.ObjectInfo](t)(obs.GetInfo(ctx, "a"))
	data := must[[]byte](t)(obs.GetBytes(ctx, "a"))
	last := must[transport.State](t)(l.State(ctx, "")).LastSeq
	newer := valid + 10 // within the log, after the valid snapshot
	// atSeq is the valid snapshot's data claiming to cover seq.
	atSeq := func(seq uint64) []byte {
		return bytes.Replace(data, fmt.Appendf(nil, `"seq":%d,`, valid), fmt.Appendf(nil, `"seq":%d,`, seq), 1)
	}
	for _, c := range []struct {
		name string
		data []byte
		meta map[string]string
		warn string // "" when the snapshot is not even looked at
	}{
		{"wrong hash", atSeq(newer), map[string]string{tasks.MetaHash: strings.Repeat("0", 64)}, "does not match its hash"},
		{"recreated stream", atSeq(newer), map[string]string{tasks.MetaCreated: "2001-01-01T00:00:00Z"}, "another incarnation"},
		{"past the end", atSeq(last + 5), map[string]string{tasks.MetaSeq: fmt.Sprint(last + 5)}, "another incarnation"},
		{"corrupt", []byte(`{"format":1,"seq":` + fmt.Sprint(newer) + `,"queues":[]}`), nil, "does not decode"},
		{"not the log's", atSeq(newer), nil, "does not match the log"},
		{"another stream", atSeq(newer), map[string]string{tasks.MetaStream: "OTHER"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			meta := maps.Clone(info.Metadata)
			sum := sha256.Sum256(c.data)
			meta[tasks.MetaHash] = hex.EncodeToString(sum[:])
			meta[tasks.MetaSeq] = fmt.Sprint(newer)
			maps.Copy(meta, c.meta)
			if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "bad", Metadata: meta}, bytes.NewReader(c.data)); err != nil {
				t.Fatal(err)
			}
			var logs testnats.SyncBuffer
			r := openWith(t, url, with(noAutoSnapshots, "r", slog.New(slog.NewTextHandler(&logs, nil))))
			if r.Restored() != valid {
				t.Errorf("restored at %d, want the valid snapshot's %d", r.Restored(), valid)
			}
			if c.warn != "" && !strings.Contains(logs.String(), c.warn) {
				t.Errorf("no warning %q: %s", c.warn, logs.String())
			}
			if c.warn == "" && strings.Contains(logs.String(), "snapshot") {
				t.Errorf("warnings about a snapshot of another stream: %s", logs.String())
			}
			sameState(t, r, full)
		})
	}

	// With no valid snapshot left, the client folds from the start.
	if err := obs.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	r := openWith(t, url, noAutoSnapshots)
	if r.Restored() != 0 {
		t.Errorf("restored at %d from an invalid snapshot", r.Restored())
	}
	sameState(t, r, full)
}

// TestSnapshotsAutomatic: a client snapshots every SnapshotEvery events,
// and SnapshotInterval after its last snapshot if events were folded.
func TestSnapshotsAutomatic(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	byCount := openWith(t, url, tasks.Options{Replica: "count", SnapshotEvery: 10, SnapshotInterval: -1})
	byTime := openWith(t, url, tasks.Options{Replica: "time", SnapshotEvery: -1, SnapshotInterval: 50 * time.Millisecond})
	history(t, l, 0, 10)
	covered := func(name string, want uint64) func() error {
		return func() error {
			obs, err := l.JetStream().ObjectStore(ctxT(t), tasks.DefaultSnapshotBucket)
			if err != nil {
				return err
			}
			info, err := obs.GetInfo(ctxT(t), name)
			if err != nil {
				return err
			}
			if seq, _ := strconv.ParseUint(info.Metadata[tasks.MetaSeq], 10, 64); seq < want {
				return fmt.Errorf("snapshot %s covers seq %d, want %d", name, seq, want)
			}
			return nil
		}
	}
	if err := byCount.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The last snapshot by count covers at least the last multiple of 10.
	applied := byCount.Applied()
	testnats.WaitFor(t, 30*time.Second, "a snapshot by count", covered("count", applied-applied%10))
	if err := byTime.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, 30*time.Second, "a snapshot by time", covered("time", byTime.Applied()))

	// A client that folded SnapshotEvery events or more to catch up
	// writes one snapshot of what it caught up with.
	late := openWith(t, url, tasks.Options{Replica: "late", NoRestore: true, SnapshotEvery: 10, SnapshotInterval: -1})
	testnats.WaitFor(t, 30*time.Second, "a snapshot after the catch-up", covered("late", late.Applied()))
}

// TestSnapshotPrune: saving a snapshot deletes other replicas' snapshots
// that cover no more of the log and were not replaced for long.
func TestSnapshotPrune(t *testing.T) {
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	history(t, l, 0, 2)
	a := openWith(t, url, with(noAutoSnapshots, "a", nil))
	must[uint64](t)(a.Snapshot(ctxT(t)))
	t.Cleanup(tasks.SetStaleSnapshotAge(0))
	history(t, l, 2, 2)
	b := openWith(t, url, with(noAutoSnapshots, "b", nil))
	if b.Restored() == 0 {
		t.Fatal("b restored nothing")
	}
	must[uint64](t)(b.Snapshot(ctxT(t)))
	infos, err := snapshotBucket(t, l).List(ctxT(t))
	if err != nil || len(infos) != 1 || infos[0].Name != "b" {
		t.Fatalf("objects after pruning: %v, %v", infos, err)
	}
}

// TestSnapshotNoBucket: a client creates the snapshot bucket only to
// write a snapshot, and a snapshot of nothing writes nothing.
func TestSnapshotNoBucket(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	c := openWith(t, url, tasks.Options{})
	if seq, err := c.Snapshot(ctxT(t)); seq != 0 || err != nil {
		t.Fatalf("snapshot of nothing: %d, %v", seq, err)
	}
	history(t, l, 0, 1)
	if err := c.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := l.JetStream().ObjectStore(ctxT(t), tasks.DefaultSnapshotBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("the bucket exists before any snapshot: %v", err)
	}
	// A snapshot can be written after Close, of the state folded.
	if seq, err := c.Snapshot(ctxT(t)); err != nil || seq != c.Applied() {
		t.Fatalf("snapshot after Close: %d, %v; applied %d", seq, err, c.Applied())
	}
}

func TestSnapshotOptions(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	for _, opts := range []tasks.Options{{Snapshots: "a.b"}, {Snapshots: "x y"}, {Replica: "\xff"}, {Replica: strings.Repeat("r", 256)}} {
		if _, err := tasks.Open(context.Background(), l, opts); !errors.Is(err, tasks.ErrInvalidOption) {
			t.Errorf("%+v: %v, want ErrInvalidOption", opts, err)
		}
	}
}
