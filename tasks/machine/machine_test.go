package machine_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks/machine"
)

// base is the wall time of second 0 of every script.
const base = int64(1_700_000_000) * int64(time.Second)

// at returns second s of a script as an event time.
func at(s int64) hlc.Timestamp { return hlc.Timestamp{WallTime: base + s*int64(time.Second)} }

var tsPattern = regexp.MustCompile(`\d{19}\.\d{10}`)

// sec writes a timestamp as "@<second>" when it falls on a whole second
// of a script, and in full otherwise.
func sec(s string) string {
	ts, err := hlc.Parse(s)
	d := ts.WallTime - base
	if err != nil || ts.Logical != 0 || d%int64(time.Second) != 0 {
		return s
	}
	return "@" + strconv.FormatInt(d/int64(time.Second), 10)
}

// format writes an outcome compactly:
// "<kind> <task> <worker> #<attempt> until=@s nb=@s: <reason>".
func format(o machine.Outcome) string {
	parts := []string{string(o.Kind)}
	if o.TaskID != "" {
		parts = append(parts, o.TaskID)
	}
	if o.Worker != "" {
		parts = append(parts, o.Worker)
	}
	if o.Attempt != 0 {
		parts = append(parts, "#"+strconv.Itoa(o.Attempt))
	}
	if !o.LeaseUntil.IsZero() {
		parts = append(parts, "until="+sec(o.LeaseUntil.String()))
	}
	if !o.NotBefore.IsZero() {
		parts = append(parts, "nb="+sec(o.NotBefore.String()))
	}
	s := strings.Join(parts, " ")
	if o.Reason != "" {
		s += ": " + tsPattern.ReplaceAllStringFunc(o.Reason, sec)
	}
	return s
}

// step is one line of a protocol script: an operation at a second and the
// outcome it must have.
type step struct {
	at   int64
	op   string
	want string
}

// run feeds the steps to q as consecutive events starting at index from.
func run(t *testing.T, q *machine.Queue, from uint64, steps []step) {
	t.Helper()
	for i, s := range steps {
		o := q.Apply(machine.Event{Index: from + uint64(i), Time: at(s.at), Data: []byte(s.op)})
		if got := format(o); got != s.want {
			t.Fatalf("step %d at %ds %s:\n got %s\nwant %s", i, s.at, s.op, got, s.want)
		}
		if o.Index != from+uint64(i) {
			t.Fatalf("step %d: index %d", i, o.Index)
		}
	}
}

// script runs steps on a new queue and returns it.
func script(t *testing.T, steps []step) *machine.Queue {
	t.Helper()
	q := machine.New("q")
	run(t, q, 0, steps)
	return q
}

func op(format string, args ...any) string { return fmt.Sprintf(format, args...) }

const create = `{"op":"create_queue"}`

func enq(id string) string { return op(`{"op":"enqueue","id":%q,"payload":{"n":1}}`, id) }
func claim(id, w string) string {
	return op(`{"op":"claim","id":%q,"worker":%q}`, id, w)
}
func claimAny(w string) string { return op(`{"op":"claim","worker":%q}`, w) }
func hb(id, w string, n int) string {
	return op(`{"op":"heartbeat","id":%q,"worker":%q,"attempt":%d}`, id, w, n)
}
func done(id, w string, n int) string {
	return op(`{"op":"complete","id":%q,"worker":%q,"attempt":%d,"result":{"ok": true}}`, id, w, n)
}
func fail(id, w string, n int, e string) string {
	return op(`{"op":"fail","id":%q,"worker":%q,"attempt":%d,"error":%q}`, id, w, n, e)
}

func TestEnqueueClaimComplete(t *testing.T) {
	q := script(t, []step{
		{0, create, "created"},
		{0, create, "duplicate"},
		{1, `{"op":"enqueue","id":"t1","payload":{ "to" : "a<b" }}`, "enqueued t1"},
		{2, claim("t1", "w1"), "claimed t1 w1 #1 until=@32"},
		{3, claim("t1", "w1"), "duplicate t1 w1 #1 until=@32"},
		{4, done("t1", "w1", 1), "completed t1 w1 #1"},
		{5, done("t1", "w1", 1), "duplicate t1 w1 #1"},
		{5, done("t1", "w2", 1), `rejected t1 w2 #1: task "t1" is completed`},
		{6, claim("t1", "w2"), `rejected t1 w2: task "t1" is completed`},
		{7, `{"op":"enqueue","id":"t1","payload":"other"}`, "duplicate t1"},
	})
	got, ok := q.Task("t1")
	if !ok || got.State != machine.StateCompleted || got.Attempts != 1 || got.Worker != "w1" ||
		string(got.Payload) != `{"to":"a<b"}` || string(got.Result) != `{"ok":true}` ||
		!got.LeaseUntil.IsZero() || got.EnqueueIndex != 2 {
		t.Fatalf("task %+v", got)
	}
}

func TestClaimNotDue(t *testing.T) {
	script(t, []step{
		{0, create, "created"},
		{0, op(`{"op":"enqueue","id":"t1","not_before":%q}`, at(10).String()), "enqueued t1 nb=@10"},
		{5, claim("t1", "w1"), `rejected t1 w1: task "t1" is not due until @10`},
		{5, claimAny("w1"), "rejected w1: no claimable task"},
		{10, claim("t1", "w1"), "claimed t1 w1 #1 until=@40"},
	})
}

func TestTwoWorkersFirstWins(t *testing.T) {
	script(t, []step{
		{0, create, "created"},
		{0, enq("t1"), "enqueued t1"},
		{1, claim("t1", "w1"), "claimed t1 w1 #1 until=@31"},
		{1, claim("t1", "w2"), `rejected t1 w2: task "t1" is held by "w1" until @31`},
		{2, done("t1", "w2", 1), `rejected t1 w2 #1: attempt 1 is held by "w1"`},
		{3, done("t1", "w1", 1), "completed t1 w1 #1"},
	})
}

func TestLeaseExpiryAndHeartbeat(t *testing.T) {
	script(t, []step{
		{0, `{"op":"create_queue","lease":"10s"}`, "created"},
		{0, enq("t1"), "enqueued t1"},
		{0, claim("t1", "w1"), "claimed t1 w1 #1 until=@10"},
		{5, hb("t1", "w1", 1), "heartbeat t1 w1 #1 until=@15"},
		{3, hb("t1", "w1", 1), "heartbeat t1 w1 #1 until=@15"}, // never shortened
		{14, claim("t1", "w2"), `rejected t1 w2: task "t1" is held by "w1" until @15`},
		{15, hb("t1", "w1", 1), "rejected t1 w1 #1: lease of attempt 1 expired at @15"},
		{15, op(`{"op":"claim","id":"t1","worker":"w2","lease":"1m"}`), "claimed t1 w2 #2 until=@75"},
		{16, done("t1", "w1", 1), "rejected t1 w1 #1: attempt 1 is not the current attempt 2"},
		{16, hb("t1", "w1", 2), `rejected t1 w1 #2: attempt 2 is held by "w2"`},
		{17, hb("t1", "w2", 3), "rejected t1 w2 #3: attempt 3 is not the current attempt 2"},
		{20, hb("t1", "w2", 2), "heartbeat t1 w2 #2 until=@80"},
		{80, done("t1", "w2", 2), "rejected t1 w2 #2: lease of attempt 2 expired at @80"},
		{81, claim("t1", "w2"), "claimed t1 w2 #3 until=@91"},
		{82, done("t1", "w2", 3), "completed t1 w2 #3"},
	})
}

func TestRetryBackoffDeadRequeue(t *testing.T) {
	q := script(t, []step{
		{0, `{"op":"create_queue","lease":"10s","max_attempts":4,"backoff":{"initial":"1s","factor":3,"max":"5s"}}`, "created"},
		{0, enq("t1"), "enqueued t1"},
		{0, claim("t1", "w1"), "claimed t1 w1 #1 until=@10"},
		{2, fail("t1", "w1", 1, "e1"), "retry t1 w1 #1 nb=@3: e1"},
		{2, fail("t1", "w1", 1, "e1"), `rejected t1 w1 #1: task "t1" is pending`},
		{2, claim("t1", "w2"), `rejected t1 w2: task "t1" is not due until @3`},
		{3, claim("t1", "w2"), "claimed t1 w2 #2 until=@13"},
		{4, fail("t1", "w2", 2, "e2"), "retry t1 w2 #2 nb=@7: e2"},
		{7, claimAny("w1"), "claimed t1 w1 #3 until=@17"},
		{8, fail("t1", "w1", 3, "e3"), "retry t1 w1 #3 nb=@13: e3"}, // 9s capped at 5s
		{13, claim("t1", "w1"), "claimed t1 w1 #4 until=@23"},
		{14, fail("t1", "w1", 4, "e4"), "dead t1 w1 #4: e4"},
		{15, claim("t1", "w1"), `rejected t1 w1: task "t1" is dead`},
		{15, claimAny("w1"), "rejected w1: no claimable task"},
	})
	if got, _ := q.Task("t1"); got.State != machine.StateDead || got.Attempts != 4 || got.LastError != "e4" {
		t.Fatalf("dead task %+v", got)
	}
	run(t, q, 14, []step{
		{16, `{"op":"requeue","id":"t1"}`, "requeued t1"},
		{16, `{"op":"requeue","id":"t1"}`, `rejected t1: task "t1" is pending, not dead`},
		{17, claim("t1", "w3"), "claimed t1 w3 #1 until=@27"},
		{18, done("t1", "w3", 1), "completed t1 w3 #1"},
	})
}

func TestBackoffDelay(t *testing.T) {
	b := machine.Backoff{Initial: time.Second, Factor: 3, Max: 5 * time.Second}
	for n, want := range []time.Duration{0, time.Second, 3 * time.Second, 5 * time.Second, 5 * time.Second} {
		if n > 0 && b.Delay(n) != want {
			t.Errorf("Delay(%d) = %v, want %v", n, b.Delay(n), want)
		}
	}
	huge := machine.Backoff{Initial: time.Hour, Factor: 1 << 40, Max: 1<<63 - 1}
	if d := huge.Delay(machine.MaxAttemptsLimit); d != huge.Max {
		t.Errorf("saturating Delay = %v", d)
	}
	if d := (machine.Backoff{Initial: 0, Factor: 2, Max: time.Minute}).Delay(9); d != 0 {
		t.Errorf("zero Delay = %v", d)
	}
}

func TestExpiredLastAttemptGoesDead(t *testing.T) {
	q := script(t, []step{
		{0, `{"op":"create_queue","lease":"10s","max_attempts":1}`, "created"},
		{0, enq("t1"), "enqueued t1"},
		{0, enq("t2"), "enqueued t2"},
		{0, claim("t1", "w1"), "claimed t1 w1 #1 until=@10"},
		{10, claimAny("w2"), "claimed t2 w2 #1 until=@20"}, // t1 is skipped
		{11, claimAny("w2"), "rejected w2: no claimable task"},
		{11, claim("t1", "w2"), "dead t1 w2 #1: lease of attempt 1 expired at @10"},
		{12, `{"op":"requeue","id":"t1"}`, "requeued t1"},
		{12, claimAny("w2"), "claimed t1 w2 #1 until=@22"},
	})
	if got, _ := q.Task("t1"); got.LastError != "lease of attempt 1 expired at "+at(10).String() {
		t.Fatalf("last error %q", got.LastError)
	}
}

func TestCancel(t *testing.T) {
	script(t, []step{
		{0, `{"op":"create_queue","max_attempts":1}`, "created"},
		{0, enq("p"), "enqueued p"},
		{0, enq("c"), "enqueued c"},
		{0, enq("d"), "enqueued d"},
		{1, `{"op":"cancel","id":"p"}`, "cancelled p"},
		{1, `{"op":"cancel","id":"p"}`, "duplicate p"},
		{2, claim("p", "w1"), `rejected p w1: task "p" is cancelled`},
		{2, `{"op":"requeue","id":"p"}`, `rejected p: task "p" is cancelled, not dead`},
		{3, claim("c", "w1"), "claimed c w1 #1 until=@33"},
		{4, `{"op":"cancel","id":"c"}`, "cancelled c"},
		{5, done("c", "w1", 1), `rejected c w1 #1: task "c" is cancelled`},
		{6, claim("d", "w1"), "claimed d w1 #1 until=@36"},
		{7, fail("d", "w1", 1, "x"), "dead d w1 #1: x"},
		{8, `{"op":"cancel","id":"d"}`, "cancelled d"},
		{9, `{"op":"cancel","id":"nope"}`, `rejected nope: no task "nope"`},
		{10, enq("e"), "enqueued e"},
		{10, claim("e", "w1"), "claimed e w1 #1 until=@40"},
		{11, done("e", "w1", 1), "completed e w1 #1"},
		{12, `{"op":"cancel","id":"e"}`, `rejected e: task "e" is completed`},
	})
}

func TestBestClaim(t *testing.T) {
	q := script(t, []step{
		{0, create, "created"},
		{0, enq("a"), "enqueued a"},
		{0, `{"op":"enqueue","id":"c","priority":5}`, "enqueued c"},
		{0, `{"op":"enqueue","id":"b","priority":5}`, "enqueued b"},
		{0, op(`{"op":"enqueue","id":"d","priority":9,"not_before":%q}`, at(50).String()), "enqueued d nb=@50"},
		{0, `{"op":"enqueue","id":"z","priority":-1}`, "enqueued z"},
	})
	var ids []string
	for _, task := range q.Claimable(at(1)) {
		ids = append(ids, task.ID)
	}
	if got := strings.Join(ids, ","); got != "c,b,a,z" {
		t.Fatalf("Claimable = %s", got)
	}
	run(t, q, 6, []step{
		{1, claimAny("w1"), "claimed c w1 #1 until=@31"},
		{1, claimAny("w1"), "claimed b w1 #1 until=@31"},
		{2, claimAny("w2"), "claimed a w2 #1 until=@32"},
		{3, claimAny("w2"), "claimed z w2 #1 until=@33"},
		{4, claimAny("w3"), "rejected w3: no claimable task"},
		{31, claimAny("w3"), "claimed c w3 #2 until=@61"}, // c's and b's leases expired
		{50, claimAny("w3"), "claimed d w3 #1 until=@80"},
	})
}

func TestMalformedOps(t *testing.T) {
	q := machine.New("q")
	if o := q.Apply(machine.Event{Time: hlc.Timestamp{WallTime: -1}, Data: []byte(create)}); o.Reason != "event time before the Unix epoch" || !o.Malformed {
		t.Fatalf("negative time: %+v", o)
	}
	if o := q.Apply(machine.Event{Data: []byte("{\"op\":\"enqueue\",\"id\":\"\xff\"}")}); o.Reason != "malformed JSON" || !o.Malformed {
		t.Fatalf("invalid UTF-8: %+v", o)
	}
	// Refused in the queue's state, not malformed.
	if o := q.Apply(machine.Event{Data: []byte(enq("t0"))}); o.Kind != machine.KindRejected || o.Malformed {
		t.Fatalf("enqueue before create_queue: %+v", o)
	}
	run(t, q, 2, []step{
		{0, enq("t0"), "rejected t0: queue not created"},
		{0, `{"op":"create_queue","lease":"0s"}`, "rejected: lease must be positive"},
		{0, `{"op":"create_queue","backoff":{"initial":"2m"}}`, "rejected: backoff.max must not be less than backoff.initial"},
		{0, `{"op":"create_queue","backoff":{"factor":1.5}}`, "rejected: backoff.factor must be an integer"},
		{0, `{"op":"create_queue","backoff":{"jitter":true}}`, `rejected: unknown field "backoff.jitter"`},
		{0, `{"op":"create_queue","backoff":[]}`, "rejected: backoff must be a JSON object"},
		{0, `{"op":"create_queue","max_attempts":1000001}`, "rejected: max_attempts out of range"},
		{0, `{"op":"create_queue","lease":"30000ms","backoff":{"max":"60s"}}`, "created"},
		{0, `{"op":"create_queue","lease":"31s"}`, "rejected: queue already created with another config"},
		{1, `not json`, "rejected: malformed JSON"},
		{1, `[1]`, "rejected: operation must be a JSON object"},
		{1, `{}`, "rejected: missing op"},
		{1, `{"op":7}`, "rejected: op must be a string"},
		{1, `{"op":"pop"}`, `rejected: unknown op "pop"`},
		{1, `{"op":"enqueue","id":"a","id":"b"}`, `rejected: duplicate field "id"`},
		{1, `{"op":"enqueue","id":"t1","zz":1,"attempt":1}`, `rejected: unknown field "attempt"`},
		{1, `{"op":"enqueue"}`, "rejected: missing id"},
		{1, `{"op":"enqueue","id":""}`, "rejected: id must not be empty"},
		{1, `{"op":"enqueue","id":"t1","priority":"1"}`, "rejected t1: priority must be an integer"},
		{1, `{"op":"enqueue","id":"t1","priority":9223372036854775808}`, "rejected t1: priority out of range"},
		{1, `{"op":"enqueue","id":"t1","not_before":"soon"}`, "rejected t1: not_before must be an HLC timestamp"},
		{1, `{"op":"claim","id":null}`, "rejected: missing worker"},
		{1, `{"op":"claim","worker":"w1","lease":"soon"}`, "rejected w1: lease must be a duration"},
		{1, `{"op":"claim","worker":"w1","lease":30}`, "rejected w1: lease must be a string"},
		{1, `{"op":"heartbeat","id":"t1","worker":"w1"}`, "rejected t1 w1: missing attempt"},
		{1, `{"op":"heartbeat","id":"t1","worker":"w1","attempt":1.0}`, "rejected t1 w1: attempt must be an integer"},
		{1, `{"op":"heartbeat","id":"t1","worker":"w1","attempt":0}`, "rejected t1 w1: attempt must be positive"},
		{1, `{"op":"complete","id":"t1","worker":"w1","attempt":1000001}`, "rejected t1 w1: attempt out of range"},
		{1, `{"op":"fail","id":"t1","worker":"w1","attempt":1,"error":3}`, "rejected t1 w1 #1: error must be a string"},
		{1, hb("t1", "w1", 1), `rejected t1 w1 #1: no task "t1"`},
		{2, `{"op":"enqueue","id":"t1","priority":-3,"payload":null}`, "enqueued t1"},
		{2, claimAny("w1"), "claimed t1 w1 #1 until=@32"},
		{3, `{"op":"complete","id":"t1","worker":"w1","attempt":1}`, "completed t1 w1 #1"},
	})
	if got, _ := q.Task("t1"); string(got.Payload) != "null" || string(got.Result) != "null" || got.Priority != -3 {
		t.Fatalf("task %+v", got)
	}
	if c, _ := q.Config(); c != machine.DefaultConfig() {
		t.Fatalf("config %+v", c)
	}
}
