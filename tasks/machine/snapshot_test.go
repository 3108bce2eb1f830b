package machine_test

import (
	"strings"
	"testing"

	"github.com/detbus/detbus/tasks/machine"
)

func snap(t *testing.T, q *machine.Queue) string {
	t.Helper()
	b, err := q.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// golden is the state of queue "mail" after the ops of goldenQueue.
const golden = `{"queue":"mail","config":{"lease":"30s","max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m0s"}},"tasks":[` +
	`{"id":"t1","state":"claimed","enqueue_index":1,"payload":{"to":"a@b"},"attempts":1,"worker":"w1","lease_until":"1700000030000000000.0000000000","lease":"30s"},` +
	`{"id":"t2","state":"completed","priority":-2,"enqueue_index":2,"payload":"<&>","attempts":1,"worker":"w2","result":{"k":[1,2]}},` +
	`{"id":"t3","state":"pending","enqueue_index":3,"payload":null,"not_before":"1700000009000000000.0000000000"}]}`

func goldenQueue(t *testing.T) *machine.Queue {
	t.Helper()
	q := machine.New("mail")
	run(t, q, 0, []step{
		{0, create, "created"},
		{0, `{"op":"enqueue","id":"t1","payload":{"to": "a@b"}}`, "enqueued t1"},
		{0, `{"op":"enqueue","id":"t2","priority":-2,"payload":"<&>"}`, "enqueued t2"},
		{0, op(`{"op":"enqueue","id":"t3","not_before":%q}`, at(9).String()), "enqueued t3 nb=@9"},
		{0, claim("t1", "w1"), "claimed t1 w1 #1 until=@30"},
		{0, claim("t2", "w2"), "claimed t2 w2 #1 until=@30"},
		{1, `{"op":"complete","id":"t2","worker":"w2","attempt":1,"result":{"k":[1, 2]}}`, "completed t2 w2 #1"},
	})
	return q
}

func TestSnapshotGolden(t *testing.T) {
	q := goldenQueue(t)
	if got := snap(t, q); got != golden {
		t.Fatalf("snapshot\n got %s\nwant %s", got, golden)
	}
	r := machine.New("mail")
	if err := r.Restore([]byte(golden)); err != nil {
		t.Fatal(err)
	}
	if got := snap(t, r); got != golden {
		t.Fatalf("restored snapshot\n got %s", got)
	}
	// The restored queue goes on exactly like the original.
	for _, q := range []*machine.Queue{q, r} {
		run(t, q, 7, []step{
			{9, claimAny("w3"), "claimed t3 w3 #1 until=@39"},
			{10, hb("t1", "w1", 1), "heartbeat t1 w1 #1 until=@40"},
		})
	}
	if snap(t, q) != snap(t, r) {
		t.Fatal("restored queue diverged")
	}
	empty := machine.New("mail")
	if got := snap(t, empty); got != `{"queue":"mail","config":null,"tasks":[]}` {
		t.Fatalf("empty snapshot %s", got)
	}
	if err := r.Restore([]byte(snap(t, empty))); err != nil || snap(t, r) != snap(t, empty) {
		t.Fatalf("restore of empty: %v", err)
	}
}

func TestRestoreRejects(t *testing.T) {
	bad := map[string]string{
		"not JSON":      `{"queue":`,
		"trailing data": golden + `{}`,
		"unknown field": strings.Replace(golden, `"queue":"mail"`, `"queue":"mail","x":1`, 1),
		"other queue":   strings.Replace(golden, `"queue":"mail"`, `"queue":"post"`, 1),
		"bad config":    strings.Replace(golden, `"factor":2`, `"factor":0`, 1),
		"no config":     strings.Replace(golden, `"config":{"lease":"30s","max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m0s"}}`, `"config":null`, 1),
		"unknown state": strings.Replace(golden, `"state":"pending"`, `"state":"waiting"`, 1),
		"no lease":      strings.Replace(golden, `,"lease_until":"1700000030000000000.0000000000","lease":"30s"`, ``, 1),
		"too many":      strings.Replace(golden, `"attempts":1,"worker":"w1"`, `"attempts":6,"worker":"w1"`, 1),
		"no worker":     strings.Replace(golden, `"attempts":1,"worker":"w1",`, `"attempts":1,`, 1),
		"no result":     strings.Replace(golden, `,"result":{"k":[1,2]}`, ``, 1),
		"early result":  strings.Replace(golden, `"payload":null`, `"payload":null,"result":1`, 1),
		"no payload":    strings.Replace(golden, `"payload":null,`, ``, 1),
		"dead early":    strings.Replace(golden, `"state":"completed"`, `"state":"dead"`, 1),
		"unsorted":      strings.Replace(golden, `"id":"t1"`, `"id":"t9"`, 1),
		"twice":         strings.Replace(golden, `"id":"t2"`, `"id":"t1"`, 1),
		"bad time":      strings.Replace(golden, `"not_before":"1700000009000000000.0000000000"`, `"not_before":"soon"`, 1),
	}
	q := goldenQueue(t)
	for name, data := range bad {
		if data == golden {
			t.Fatalf("%s: the case does not change the snapshot", name)
		}
		if err := q.Restore([]byte(data)); err == nil {
			t.Errorf("%s: Restore accepted %s", name, data)
		} else if !strings.HasPrefix(err.Error(), "machine: restore: ") {
			t.Errorf("%s: error %q", name, err)
		}
		if got := snap(t, q); got != golden {
			t.Fatalf("%s: a refused Restore changed the state", name)
		}
	}
}

// TestRestoreNonCanonical: another encoding of a reachable state (spacing,
// another form of a duration, a zero field written out) restores that
// state, which snapshots to the canonical bytes.
func TestRestoreNonCanonical(t *testing.T) {
	for name, data := range map[string]string{
		"spaces":       strings.Replace(golden, `"queue":"mail"`, `"queue": "mail"`, 1),
		"lease form":   strings.Replace(golden, `"lease":"30s","max`, `"lease":"30000ms","max`, 1),
		"zero present": strings.Replace(golden, `"enqueue_index":3,`, `"enqueue_index":3,"priority":0,`, 1),
	} {
		if data == golden {
			t.Fatalf("%s: the case does not change the snapshot", name)
		}
		q := machine.New("mail")
		if err := q.Restore([]byte(data)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := snap(t, q); got != golden {
			t.Fatalf("%s: restored state snapshots to\n%s\nwant\n%s", name, got, golden)
		}
	}
}

// TestFreeze: a frozen copy encodes as the queue did when it was
// frozen, whatever is applied to the queue after.
func TestFreeze(t *testing.T) {
	q := goldenQueue(t)
	f := q.Freeze()
	run(t, q, 7, []step{
		{9, claimAny("w3"), "claimed t3 w3 #1 until=@39"},
		{10, hb("t1", "w1", 1), "heartbeat t1 w1 #1 until=@40"},
		{11, `{"op":"enqueue","id":"t0"}`, "enqueued t0"},
	})
	got, err := f.Snapshot()
	if err != nil || string(got) != golden {
		t.Fatalf("frozen snapshot: %v\n got %s", err, got)
	}
	if e, _ := machine.New("mail").Freeze().Snapshot(); string(e) != `{"queue":"mail","config":null,"tasks":[]}` {
		t.Fatalf("frozen empty queue: %s", e)
	}
}
