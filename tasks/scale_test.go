package tasks_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// scaleTaskEvents is the number of task events the scale test writes
// before the snapshot.
const scaleTaskEvents = 1_000_000

// publishTasks writes, on a connection to url, task events from number start to end (exclusive)
// of one long history to queue with pipelined JetStream publishes, as
// plain NATS clients write them: event 0 creates the queue, then each
// task is enqueued with an id, claimed by that id and completed, a third
// of the events each.
func publishTasks(t testing.TB, url string, l *transport.Log, queue string, start, end int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nc := testnats.Conn(t, url)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		t.Fatal(err)
	}
	subject := l.Subject(tasks.ESKPrefix + queue)
	const window = 50_000
	var buf []byte
	for from := start; from < end; from += window {
		for i := from; i < min(from+window, end); i++ {
			id := (i - 1) / 3
			switch {
			case i == 0:
				buf = []byte(`{"op":"create_queue","lease":"1h"}`)
			case (i-1)%3 == 0:
				buf = fmt.Appendf(buf[:0], `{"op":"enqueue","id":"t%07d"}`, id)
			case (i-1)%3 == 1:
				buf = fmt.Appendf(buf[:0], `{"op":"claim","id":"t%07d","worker":"w"}`, id)
			default:
				buf = fmt.Appendf(buf[:0], `{"op":"complete","id":"t%07d","worker":"w","attempt":1}`, id)
			}
			if _, err := js.PublishAsync(subject, bytes.Clone(buf)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}

// TestScaleOpenAfterSnapshot: with a million task events before a
// snapshot, a client opened afterwards restores it and reads only the
// events that follow.
func TestScaleOpenAfterSnapshot(t *testing.T) {
	if testnats.Race {
		t.Skip("builds a log of a million events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		t.Skip("builds a log of a million events")
	}
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	start := time.Now()
	publishTasks(t, url, l, "big", 0, scaleTaskEvents)
	t.Logf("%d task events written in %v", scaleTaskEvents, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	a, err := tasks.Open(ctx, testnats.Log(t, url, transport.Config{}), tasks.Options{Replica: "a", SnapshotEvery: -1, SnapshotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	t.Logf("Open folding every event: %v, %d events read", time.Since(start).Round(time.Millisecond), a.Log().ReadStats().Delivered)
	info := must[tasks.QueueInfo](t)(a.Queue("big"))
	if info.Events != scaleTaskEvents || info.Malformed+info.Refused != 0 {
		t.Fatalf("queue after the history: %+v", info)
	}
	start = time.Now()
	snapAt, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of %d tasks at seq %d written in %v", info.Tasks["completed"], snapAt, time.Since(start).Round(time.Millisecond))

	const tail = 3000
	publishTasks(t, url, l, "big", scaleTaskEvents, scaleTaskEvents+tail)

	start = time.Now()
	b, err := tasks.Open(ctx, testnats.Log(t, url, transport.Config{}), tasks.Options{SnapshotEvery: -1, SnapshotInterval: -1})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	read := b.Log().ReadStats().Delivered
	t.Logf("Open after the snapshot: %v, %d events read (%d follow the snapshot)", took.Round(time.Millisecond), read, tail)
	if b.Restored() != snapAt {
		t.Fatalf("restored at seq %d, the snapshot covers %d", b.Restored(), snapAt)
	}
	if read > tail+16 {
		t.Fatalf("Open read %d events; %d follow the snapshot", read, tail)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	da, sa := snapshotData(t, a)
	db, sb := snapshotData(t, b)
	if sa != sb || !bytes.Equal(da, db) {
		t.Fatalf("the restored client's state differs from the full fold's (seq %d, %d; %d and %d bytes)", sa, sb, len(da), len(db))
	}
}
