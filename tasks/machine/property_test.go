package machine_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks/machine"
)

// genOp is a generated operation: its fields, for the model, and its
// bytes, for the machine.
type genOp struct {
	op, id, worker string
	attempt        int
	priority       int64
	notBefore      hlc.Timestamp
	lease          time.Duration
	cfg            machine.Config
	data           []byte
}

var malformed = []string{
	`{"op":"claim"`, `[]`, `{"op":"dance"}`, `{"op":"enqueue","id":7}`,
	`{"op":"complete","id":"t1","worker":"w1","attempt":-1}`,
	`{"op":"claim","worker":"w1","lease":"-3s"}`, `{"op":"cancel","id":"t1","id":"t2"}`,
}

// generate draws an operation at now, peeking at q so that most reports
// name a plausible worker and attempt.
func generate(rng *rand.Rand, q *machine.Queue, now hlc.Timestamp) genOp {
	g := genOp{id: fmt.Sprintf("t%d", rng.IntN(8)), worker: fmt.Sprintf("w%d", rng.IntN(3))}
	r := rng.IntN(100)
	if _, ok := q.Config(); !ok && rng.IntN(3) == 0 {
		r = 0
	}
	// Mostly name a task that exists, in the state the op expects.
	var some, claimed, dead []string
	for _, t := range q.Tasks() {
		some = append(some, t.ID)
		switch t.State {
		case machine.StateClaimed:
			claimed = append(claimed, t.ID)
		case machine.StateDead:
			dead = append(dead, t.ID)
		}
	}
	pick := some
	switch {
	case r >= 48 && r < 85 && len(claimed) > 0:
		pick = claimed
	case r >= 90 && r < 95 && len(dead) > 0:
		pick = dead
	}
	if r >= 20 && len(pick) > 0 && rng.IntN(4) != 0 {
		g.id = pick[rng.IntN(len(pick))]
	}
	task, _ := q.Task(g.id)
	switch {
	case r < 1:
		g.op = machine.OpCreateQueue
		g.cfg = machine.Config{
			Lease:       time.Duration(1+rng.IntN(4)) * time.Second,
			MaxAttempts: 1 + rng.IntN(3),
			Backoff: machine.Backoff{Initial: time.Duration(rng.IntN(3)) * 500 * time.Millisecond,
				Factor: 1 + rng.Int64N(3), Max: 2 * time.Second},
		}
		b := g.cfg.Backoff
		g.data = fmt.Appendf(nil, `{"op":"create_queue","lease":%q,"max_attempts":%d,"backoff":{"initial":%q,"factor":%d,"max":%q}}`,
			g.cfg.Lease, g.cfg.MaxAttempts, b.Initial, b.Factor, b.Max)
	case r < 20:
		g.op, g.priority = machine.OpEnqueue, rng.Int64N(4)-1
		if rng.IntN(4) == 0 {
			g.notBefore = hlc.Timestamp{WallTime: now.WallTime + rng.Int64N(3e9), Logical: rng.Uint32N(3)}
			g.data = fmt.Appendf(nil, `{"op":"enqueue","id":%q,"priority":%d,"not_before":%q,"payload":[%d]}`, g.id, g.priority, g.notBefore, r)
		} else {
			g.data = fmt.Appendf(nil, `{"op":"enqueue","id":%q,"priority":%d,"payload":{"r":%d}}`, g.id, g.priority, r)
		}
	case r < 48:
		g.op = machine.OpClaim
		if r < 36 {
			g.id = ""
		}
		if rng.IntN(3) == 0 {
			g.lease = time.Duration(1+rng.IntN(3)) * time.Second
			g.data = fmt.Appendf(nil, `{"op":"claim","id":%q,"worker":%q,"lease":%q}`, g.id, g.worker, g.lease)
		} else {
			g.data = fmt.Appendf(nil, `{"op":"claim","id":%q,"worker":%q}`, g.id, g.worker)
		}
		if g.id == "" {
			g.data = bytes.Replace(g.data, []byte(`"id":"",`), nil, 1)
		}
	case r < 85:
		g.op = []string{machine.OpHeartbeat, machine.OpComplete, machine.OpFail, machine.OpFail}[r%4]
		if task.Worker != "" && rng.IntN(4) != 0 {
			g.worker = task.Worker
		}
		g.attempt = max(1, task.Attempts+[]int{-1, 0, 0, 0, 0, 1}[rng.IntN(6)])
		g.data = fmt.Appendf(nil, `{"op":%q,"id":%q,"worker":%q,"attempt":%d,"error":"e%d"}`, g.op, g.id, g.worker, g.attempt, r)
		if g.op != machine.OpFail {
			g.data = bytes.Replace(g.data, fmt.Appendf(nil, `,"error":"e%d"`, r), nil, 1)
		}
	case r < 90:
		g.op = machine.OpCancel
		g.data = fmt.Appendf(nil, `{"op":"cancel","id":%q}`, g.id)
	case r < 95:
		g.op = machine.OpRequeue
		g.data = fmt.Appendf(nil, `{"op":"requeue","id":%q}`, g.id)
	default:
		g.op, g.data = "", []byte(malformed[rng.IntN(len(malformed))])
	}
	return g
}

// mtask is the model of a task, kept from first principles.
type mtask struct {
	state            machine.State
	priority         int64
	index            uint64
	notBefore, until hlc.Timestamp
	attempts         int
	worker           string
	lease            time.Duration
	final            *machine.Task // the task once completed or cancelled
}

type model struct {
	cfg   *machine.Config
	tasks map[string]*mtask
}

func plus(t hlc.Timestamp, d time.Duration) hlc.Timestamp {
	return hlc.Timestamp{WallTime: t.WallTime + int64(d), Logical: t.Logical}
}

func (m *model) claimable(t *mtask, now hlc.Timestamp) bool {
	return (t.state == machine.StatePending && !now.Less(t.notBefore)) ||
		(t.state == machine.StateClaimed && !now.Less(t.until) && t.attempts < m.cfg.MaxAttempts)
}

// predict returns the outcome the operation must have and applies it to
// the model.
func (m *model) predict(g genOp, index uint64, now hlc.Timestamp) machine.Outcome {
	rejected := machine.Outcome{Kind: machine.KindRejected}
	o := machine.Outcome{TaskID: g.id}
	switch {
	case g.op == "":
		return rejected
	case g.op == machine.OpCreateQueue && m.cfg == nil:
		m.cfg = &g.cfg
		return machine.Outcome{Kind: machine.KindCreated}
	case g.op == machine.OpCreateQueue && *m.cfg == g.cfg:
		return machine.Outcome{Kind: machine.KindDuplicate}
	case m.cfg == nil || g.op == machine.OpCreateQueue:
		return rejected
	}
	t := m.tasks[g.id]
	switch g.op {
	case machine.OpEnqueue:
		if t != nil {
			o.Kind = machine.KindDuplicate
			return o
		}
		m.tasks[g.id] = &mtask{state: machine.StatePending, priority: g.priority, index: index, notBefore: g.notBefore}
		o.Kind, o.NotBefore = machine.KindEnqueued, g.notBefore
		return o
	case machine.OpClaim:
		if g.id == "" {
			for id, c := range m.tasks {
				if m.claimable(c, now) && (t == nil || c.priority > t.priority ||
					c.priority == t.priority && c.index < t.index) {
					t, o.TaskID = c, id
				}
			}
		}
		switch {
		case t == nil:
			return rejected
		case t.state == machine.StateClaimed && now.Less(t.until) && t.worker == g.worker:
			o.Kind, o.Attempt, o.LeaseUntil = machine.KindDuplicate, t.attempts, t.until
			return o
		case t.state == machine.StateClaimed && !now.Less(t.until) && t.attempts == m.cfg.MaxAttempts:
			t.state, t.lease, t.until = machine.StateDead, 0, hlc.Timestamp{}
			o.Kind, o.Attempt = machine.KindDead, t.attempts
			return o
		case !m.claimable(t, now):
			return rejected
		}
		t.attempts++
		t.state, t.worker, t.lease = machine.StateClaimed, g.worker, cmp(g.lease, m.cfg.Lease)
		t.until = plus(now, t.lease)
		o.Kind, o.Attempt, o.LeaseUntil = machine.KindClaimed, t.attempts, t.until
		return o
	case machine.OpCancel:
		switch {
		case t == nil || t.state == machine.StateCompleted:
			return rejected
		case t.state == machine.StateCancelled:
			o.Kind = machine.KindDuplicate
			return o
		}
		t.state, t.lease, t.until, o.Kind = machine.StateCancelled, 0, hlc.Timestamp{}, machine.KindCancelled
		return o
	case machine.OpRequeue:
		if t == nil || t.state != machine.StateDead {
			return rejected
		}
		t.state, t.attempts, t.worker, t.notBefore = machine.StatePending, 0, "", hlc.Timestamp{}
		o.Kind = machine.KindRequeued
		return o
	}
	o.Attempt = g.attempt
	switch {
	case t == nil:
		return rejected
	case g.op == machine.OpComplete && t.state == machine.StateCompleted && t.worker == g.worker && t.attempts == g.attempt:
		o.Kind = machine.KindDuplicate
		return o
	case t.state != machine.StateClaimed || t.attempts != g.attempt || t.worker != g.worker || !now.Less(t.until):
		return rejected
	case g.op == machine.OpHeartbeat:
		if t.until.Less(plus(now, t.lease)) {
			t.until = plus(now, t.lease)
		}
		o.Kind, o.LeaseUntil = machine.KindHeartbeat, t.until
		return o
	case g.op == machine.OpComplete:
		t.state, o.Kind = machine.StateCompleted, machine.KindCompleted
	case t.attempts == m.cfg.MaxAttempts:
		t.state, o.Kind = machine.StateDead, machine.KindDead
	default:
		t.state, t.notBefore = machine.StatePending, plus(now, m.cfg.Backoff.Delay(t.attempts))
		o.Kind, o.NotBefore = machine.KindRetry, t.notBefore
	}
	t.lease, t.until = 0, hlc.Timestamp{}
	return o
}

func cmp(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// check compares the queue with the model and checks the invariants.
func (m *model) check(q *machine.Queue) error {
	tasks := q.Tasks()
	if len(tasks) != len(m.tasks) {
		return fmt.Errorf("%d tasks, model has %d", len(tasks), len(m.tasks))
	}
	for i, task := range tasks {
		t := m.tasks[task.ID]
		switch {
		case t == nil || i > 0 && tasks[i-1].ID >= task.ID:
			return fmt.Errorf("task %s unexpected or out of order", task.ID)
		case task.State != t.state || task.Attempts != t.attempts || task.Worker != t.worker ||
			task.LeaseUntil != t.until || task.Lease != t.lease || task.NotBefore != t.notBefore:
			return fmt.Errorf("task %+v, model %+v", task, *t)
		case task.Attempts > m.cfg.MaxAttempts || task.State == machine.StatePending && task.Attempts == m.cfg.MaxAttempts:
			return fmt.Errorf("task %s: %d attempts of %d", task.ID, task.Attempts, m.cfg.MaxAttempts)
		case task.State == machine.StateDead && task.Attempts != m.cfg.MaxAttempts:
			return fmt.Errorf("task %s dead after %d attempts", task.ID, task.Attempts)
		case task.State == machine.StateClaimed && (task.Worker == "" || task.Lease <= 0 || task.LeaseUntil.IsZero()),
			task.State != machine.StateClaimed && (task.Lease != 0 || !task.LeaseUntil.IsZero()):
			return fmt.Errorf("task %s: %s, holder %q, lease until %v", task.ID, task.State, task.Worker, task.LeaseUntil)
		case t.final != nil && !reflect.DeepEqual(*t.final, task):
			return fmt.Errorf("final task %s changed: %+v", task.ID, task)
		}
		if t.final == nil && (task.State == machine.StateCompleted || task.State == machine.StateCancelled) {
			t.final = &task
		}
	}
	return nil
}

// sequence generates n events and applies them to q, checking each
// outcome against the model; it returns the events, the outcomes and the
// snapshot taken after the first k events.
func sequence(t *testing.T, rng *rand.Rand, q *machine.Queue, n, k int) ([]machine.Event, []machine.Outcome, string) {
	m := &model{tasks: map[string]*mtask{}}
	var wall int64
	var events []machine.Event
	var outcomes []machine.Outcome
	var atK string
	for i := range n {
		if i == k {
			atK = snap(t, q)
		}
		if rng.IntN(10) == 0 {
			wall = max(0, wall-rng.Int64N(3)*int64(time.Second))
		} else {
			wall += rng.Int64N(7) * int64(time.Second) / 2
		}
		now := hlc.Timestamp{WallTime: base + wall, Logical: rng.Uint32N(3)}
		g := genOp{op: machine.OpCreateQueue, cfg: machine.DefaultConfig(), data: []byte(create)}
		if i > 0 || rng.IntN(5) == 0 {
			g = generate(rng, q, now)
		}
		ev := machine.Event{Index: uint64(i), Time: now, Data: g.data}
		var best []machine.Task
		if g.op == machine.OpClaim && g.id == "" && m.cfg != nil {
			best = q.Claimable(now)
		}
		want := m.predict(g, ev.Index, now)
		var before string
		if want.Kind == machine.KindRejected {
			before = snap(t, q)
		}
		got := q.Apply(ev)
		events, outcomes = append(events, ev), append(outcomes, got)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("event %d at %s %s: got %+v: %s", i, now, g.data, got, fmt.Sprintf(format, args...))
		}
		if got.Kind != want.Kind || got.Kind != machine.KindRejected && (got.TaskID != want.TaskID ||
			got.Attempt != want.Attempt || got.LeaseUntil != want.LeaseUntil || got.NotBefore != want.NotBefore) {
			fail("model predicts %+v", want)
		}
		if got.Kind == machine.KindRejected && snap(t, q) != before {
			fail("a rejected event changed the state")
		}
		if got.Kind == machine.KindClaimed && best != nil && best[0].ID != got.TaskID {
			fail("claim without id took %s, Claimable lists %s first", got.TaskID, best[0].ID)
		}
		if m.cfg != nil {
			if err := m.check(q); err != nil {
				fail("%v", err)
			}
		}
	}
	if k == n {
		atK = snap(t, q)
	}
	return events, outcomes, atK
}

func TestPropertyRandomSequences(t *testing.T) {
	seeds := 2000
	if testing.Short() {
		seeds = 300
	}
	kinds := map[machine.Kind]int{}
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 0x7461736b))
		n := 10 + rng.IntN(50)
		k := rng.IntN(n + 1)
		q := machine.New("q")
		events, outcomes, atK := sequence(t, rng, q, n, k)
		final := snap(t, q)
		for _, o := range outcomes {
			kinds[o.Kind]++
		}

		// The same events give the same outcomes and bytes.
		twin := machine.New("q")
		for i, ev := range events {
			if o := twin.Apply(ev); !reflect.DeepEqual(o, outcomes[i]) {
				t.Fatalf("seed %d event %d: twin got %+v, want %+v", seed, i, o, outcomes[i])
			}
		}
		if snap(t, twin) != final {
			t.Fatalf("seed %d: twin snapshot differs", seed)
		}

		// A snapshot at any point, restored, goes on the same way.
		restored := machine.New("q")
		if err := restored.Restore([]byte(atK)); err != nil {
			t.Fatalf("seed %d: restore at %d: %v", seed, k, err)
		}
		for i, ev := range events[k:] {
			if o := restored.Apply(ev); !reflect.DeepEqual(o, outcomes[k+i]) {
				t.Fatalf("seed %d: restored at %d, event %d got %+v, want %+v", seed, k, k+i, o, outcomes[k+i])
			}
		}
		if snap(t, restored) != final {
			t.Fatalf("seed %d: restored at %d, final snapshot differs", seed, k)
		}
	}
	// The sequences reach every kind of outcome.
	for _, k := range []machine.Kind{machine.KindCreated, machine.KindEnqueued, machine.KindDuplicate,
		machine.KindClaimed, machine.KindHeartbeat, machine.KindCompleted, machine.KindRetry,
		machine.KindDead, machine.KindCancelled, machine.KindRequeued, machine.KindRejected} {
		if kinds[k] < seeds/200 {
			t.Errorf("only %d outcomes %q", kinds[k], k)
		}
	}
}
