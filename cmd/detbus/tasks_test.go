package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
)

// tasksCLI runs `detbus tasks <args>` in-process against url.
func tasksCLI(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	out := &testnats.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, append(append([]string{"tasks"}, args...), "--nats", url), out, out)
	return out.String(), err
}

// TestTasksCommands drives a queue through the admin commands: create,
// add (idempotent), list, show, cancel, dead and retry, rejected, and
// usage errors.
func TestTasksCommands(t *testing.T) {
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ok := func(want string, args ...string) string {
		t.Helper()
		out, err := tasksCLI(t, url, args...)
		if err != nil {
			t.Fatalf("tasks %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("tasks %s: output lacks %q:\n%s", strings.Join(args, " "), want, out)
		}
		return out
	}
	ok(`"outcome":"created"`, "create", "mail", "--lease", "1s", "--max-attempts", "1")
	ok(`"outcome":"duplicate"`, "create", "mail", "--lease", "1000ms", "--max-attempts", "1")
	ok(`{"queue":"mail","task":"t1","index":2,"seq":3,"outcome":"enqueued"}`, "add", "mail", `{"to":"a@b"}`, "--id", "t1", "--priority", "5")
	ok(`"outcome":"duplicate"`, "add", "mail", `{"to":"other"}`, "--id", "t1")
	ok(`"outcome":"enqueued"`, "add", "mail", "--id", "t2", "--delay", "1h")
	out := ok(`"outcome":"enqueued"`, "add", "mail")
	var generated opResult
	if err := json.Unmarshal([]byte(out), &generated); err != nil || generated.Task == "" {
		t.Fatalf("add without id: %v %q", err, out)
	}
	ok(`"payload": {`, "show", "mail", "t1")
	if out := ok("t2", "list", "mail", "--state", "pending"); !hasRow(out, "t2", "pending", "0", "0") {
		t.Fatalf("list:\n%s", out)
	}
	ok(`"id":"t1","state":"pending","priority":5`, "list", "mail", "--json")

	// t1 claimed by a worker that goes away: its only attempt expires and
	// a claim naming it moves it to the dead letters.
	write := func(body string) {
		t.Helper()
		if _, err := l.Write(context.Background(), "tasks.mail", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"op":"claim","id":"t1","worker":"gone"}`)
	testnats.WaitFor(t, 10*time.Second, "t1 dead", func() error {
		write(`{"op":"claim","id":"t1","worker":"reaper"}`)
		out, err := tasksCLI(t, url, "dead", "mail")
		if err != nil || !strings.Contains(out, "t1") {
			return fmt.Errorf("dead letters: %v\n%s", err, out)
		}
		return nil
	})
	ok("lease of attempt 1 expired", "dead", "mail")
	ok(`"outcome":"requeued"`, "retry", "mail", "t1")
	ok(`"outcome":"cancelled"`, "cancel", "mail", "t1")
	out, err := tasksCLI(t, url, "retry", "mail", "t1")
	if err == nil || !strings.Contains(out, `"outcome":"rejected","reason":"task \"t1\" is cancelled, not dead"`) {
		t.Fatalf("retry of a cancelled task: %v\n%s", err, out)
	}
	write(`{"op":"enqueue","id":"x","colour":"red"}`)
	ok(`unknown field "colour"`, "rejected", "mail")
	if out := ok("mail", "list"); !hasRow(out, "mail", "2", "0", "0", "0", "1", "1") {
		t.Fatalf("list of queues:\n%s", out)
	}

	for _, args := range [][]string{
		{}, {"frobnicate"}, {"add"}, {"add", "a..b"}, {"add", "mail", "{"}, {"add", "mail", "--delay", "-1s"},
		{"list", "mail", "--state", "sleeping"}, {"create", "mail", "--lease", "0s"}, {"work", "mail", "--concurrency", "-1"},
		{"show", "mail"},
	} {
		out, err := tasksCLI(t, url, args...)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("tasks %q: %v, want a usage error\n%s", args, err, out)
		}
	}
}

// hasRow reports whether a line of out starts with the given fields.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}

// execution is one run of a handler, from the --record ESK.
type execution struct {
	worker        string
	start, finish hlc.Timestamp // finish is zero when the worker died first
}

// TestTaskWorkerProcessesSurviveKill runs 1000 tasks on four `detbus
// tasks work` processes and SIGKILLs one while it runs a task. Every task
// completes; the fold shows that every accepted complete came from the
// holder of the current lease, that leases of a task never overlap, and
// that handler executions (recorded by the workers) of a task never
// overlap in time; the killed worker's task is run again after its lease
// expired.
func TestTaskWorkerProcessesSurviveKill(t *testing.T) {
	const n, queue, records = 1000, "jobs", "runs.jobs"
	const lease = 2 * time.Second
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := tasks.Open(ctx, l, tasks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := machine.DefaultConfig()
	cfg.Lease, cfg.Backoff.Initial = lease, 10*time.Millisecond
	if _, err := c.Create(ctx, queue, cfg); err != nil {
		t.Fatal(err)
	}
	var pending []*transport.PendingWrite
	for i := range n {
		sleep := "2ms"
		if i%20 == 0 {
			sleep = "300ms"
		}
		op := machine.Op{Op: machine.OpEnqueue, ID: fmt.Sprintf("t%04d", i), Payload: json.RawMessage(`{"sleep":"` + sleep + `"}`)}
		p, err := l.WriteAsync(ctx, "tasks."+queue, op.AppendJSON(nil), transport.WithHLC())
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if _, err := p.Result(); err != nil {
			t.Fatal(err)
		}
	}

	// Follow the execution records.
	var mu sync.Mutex
	var recs []execRecord
	var recTimes []hlc.Timestamp
	go func() {
		for ev, err := range l.Events(ctx, []string{records}, transport.ReadOptions{Follow: true}) {
			if err != nil {
				return
			}
			var r execRecord
			if err := json.Unmarshal(ev.Data, &r); err != nil {
				continue
			}
			mu.Lock()
			recs, recTimes = append(recs, r), append(recTimes, ev.Time)
			mu.Unlock()
		}
	}()

	var workers []*proc
	for i := range 4 {
		workers = append(workers, startTaskWorker(t, url, queue, fmt.Sprint("w", i), "--concurrency", "4", "--record", records))
	}
	// Kill w0 while it runs a long task.
	testnats.WaitFor(t, 60*time.Second, "w0 running a long task", func() error {
		mu.Lock()
		defer mu.Unlock()
		running := map[string]bool{}
		for _, r := range recs {
			if r.Worker == "w0" && r.Phase == "start" {
				running[r.Task] = true
			} else if r.Worker == "w0" {
				delete(running, r.Task)
			}
		}
		for id := range running {
			var i int
			fmt.Sscanf(id, "t%d", &i)
			if i%20 == 0 {
				return nil
			}
		}
		return errors.New("not yet")
	})
	workers[0].kill(t)

	testnats.WaitFor(t, 120*time.Second, "every task completed", func() error {
		info, err := c.Queue(queue)
		if err != nil {
			return err
		}
		if done := info.Tasks[machine.StateCompleted]; done != n {
			return fmt.Errorf("%d of %d completed (%v)", done, n, info.Tasks)
		}
		return nil
	})
	for _, w := range workers[1:] {
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := w.wait(t, time.Minute); err != nil {
			t.Errorf("worker exit: %v\n%s", err, w.out.String())
		}
		if !strings.Contains(w.out.String(), " completed, ") {
			t.Errorf("worker printed no stats:\n%s", w.out.String())
		}
	}

	leases := checkLeases(t, l, queue, n)
	// Executions, from the records written before each handler's work
	// and after it.
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, 30*time.Second, "every record", func() error {
		want, err := l.Count(ctx, records)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || uint64(len(recs)) < want {
			return fmt.Errorf("%d records of %d (%v)", len(recs), want, err)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	runs := map[string]map[int]*execution{} // task -> attempt -> execution
	for i, r := range recs {
		if runs[r.Task] == nil {
			runs[r.Task] = map[int]*execution{}
		}
		e := runs[r.Task][r.Attempt]
		switch {
		case r.Phase == "start" && e == nil:
			runs[r.Task][r.Attempt] = &execution{worker: r.Worker, start: recTimes[i]}
		case r.Phase == "finish" && e != nil && e.worker == r.Worker && e.finish.IsZero():
			e.finish = recTimes[i]
		default:
			t.Fatalf("record %+v out of place", r)
		}
	}
	killed := 0
	for id, attempts := range runs {
		keys := make([]int, 0, len(attempts))
		for a := range attempts {
			keys = append(keys, a)
		}
		sort.Ints(keys)
		for i, a := range keys {
			e, ls := attempts[a], leases[id][a]
			if ls.worker != e.worker {
				t.Fatalf("task %s attempt %d ran on %s but was claimed by %s", id, a, e.worker, ls.worker)
			}
			if e.start.Less(ls.claimed) {
				t.Fatalf("task %s attempt %d started before its claim", id, a)
			}
			end := e.finish
			if end.IsZero() {
				if e.worker != "w0" {
					t.Fatalf("task %s attempt %d on %s never finished", id, a, e.worker)
				}
				end = ls.until
				killed++
				if i == len(keys)-1 {
					t.Fatalf("task %s: the killed attempt %d was not run again", id, a)
				}
			} else if !end.Less(ls.until) {
				t.Fatalf("task %s attempt %d finished at %s, after its lease ended at %s", id, a, end, ls.until)
			}
			if i+1 < len(keys) {
				if next := attempts[keys[i+1]]; next.start.Less(end) {
					t.Fatalf("task %s: attempt %d started at %s, before attempt %d ended at %s", id, keys[i+1], next.start, a, end)
				}
			}
		}
	}
	if len(runs) != n {
		t.Fatalf("%d tasks ran, want %d", len(runs), n)
	}
	if killed == 0 {
		t.Fatal("no execution of the killed worker was cut short")
	}
	t.Logf("%d records, %d executions cut short by the kill", len(recs), killed)
}

// leaseOf is one attempt's lease as the fold decided it.
type leaseOf struct {
	worker         string
	claimed, until hlc.Timestamp // the claim's time; when the lease ended or ends
}

// checkLeases replays the queue's events through a fresh machine and
// checks, independently of it, that every accepted complete came from
// the holder of the task's current lease while it held it, and that a
// task is never claimed while another lease on it runs. It returns every
// attempt's lease.
func checkLeases(t *testing.T, l *transport.Log, queue string, n int) map[string]map[int]leaseOf {
	t.Helper()
	q := machine.New(queue)
	leases := map[string]map[int]leaseOf{}
	current := map[string]int{} // task -> attempt holding or last holding a lease
	completed := 0
	for ev, err := range l.Events(context.Background(), []string{"tasks." + queue}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		outs := []machine.Outcome{q.Apply(machine.Event{Index: ev.Index, Time: ev.Time, Data: ev.Data})}
		if outs[0].Kind == machine.KindBatch {
			outs = outs[0].Ops
		}
		for _, o := range outs {
			checkLease(t, ev.Time, o, leases, current, &completed)
		}
	}
	if completed != n {
		t.Fatalf("%d completes accepted, want %d", completed, n)
	}
	return leases
}

// checkLease checks one outcome against the leases so far and records
// what it does to them.
func checkLease(t *testing.T, now hlc.Timestamp, o machine.Outcome, leases map[string]map[int]leaseOf, current map[string]int, completed *int) {
	t.Helper()
	id := o.TaskID
	switch o.Kind {
	case machine.KindClaimed:
		if a, ok := current[id]; ok {
			if prev := leases[id][a]; now.Less(prev.until) {
				t.Fatalf("task %s claimed at %s by %s while attempt %d of %s runs until %s", id, now, o.Worker, a, prev.worker, prev.until)
			}
		}
		if leases[id] == nil {
			leases[id] = map[int]leaseOf{}
		}
		leases[id][o.Attempt] = leaseOf{worker: o.Worker, claimed: now, until: o.LeaseUntil}
		current[id] = o.Attempt
	case machine.KindHeartbeat:
		ls := leases[id][o.Attempt]
		ls.until = o.LeaseUntil
		leases[id][o.Attempt] = ls
	case machine.KindDead:
		if o.Op == machine.OpClaim { // a claim naming an expired last attempt
			if ls := leases[id][current[id]]; now.Less(ls.until) {
				t.Fatalf("task %s dead-lettered at %s while its lease runs until %s", id, now, ls.until)
			}
			break
		}
		fallthrough
	case machine.KindCompleted, machine.KindRetry:
		a, ok := current[id]
		ls := leases[id][a]
		if !ok || a != o.Attempt || ls.worker != o.Worker || !now.Less(ls.until) {
			t.Fatalf("%s of %s attempt %d by %s at %s, but the lease is attempt %d of %s until %s", o.Kind, id, o.Attempt, o.Worker, now, a, ls.worker, ls.until)
		}
		ls.until = now // the lease ends with the report
		leases[id][a] = ls
		if o.Kind == machine.KindCompleted {
			*completed++
		}
	}
}

// startTaskWorker starts `detbus tasks work` as a process.
func startTaskWorker(t *testing.T, url, queue, id string, extra ...string) *proc {
	t.Helper()
	return startProc(t, "task worker "+id, append([]string{"tasks", "work", queue, "--nats", url, "--id", id}, extra...)...)
}

// TestTasksWorkExec: `tasks work --exec` prints each command's output as
// whole lines, a newline ending what the command left open, and its
// summary counts the task it dead-lettered.
func TestTasksWorkExec(t *testing.T) {
	url := kvNode(t)
	for _, args := range [][]string{
		{"create", "jobs", "--max-attempts", "1"},
		{"add", "jobs", `{"n":1}`, "--id", "a"},
		{"add", "jobs", `{"n":2}`, "--id", "b"},
		{"add", "jobs", `{"n":3}`, "--id", "bad"},
	} {
		if out, err := tasksCLI(t, url, args...); err != nil {
			t.Fatalf("tasks %q: %v\n%s", args, err, out)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testnats.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tasks", "work", "jobs", "--id", "w", "--concurrency", "2", "--nats", url,
			"--exec", `printf '%s' "$(cat)"; test "$DETBUS_TASK_ID" != bad`}, &out, &out)
	}()
	testnats.WaitFor(t, 30*time.Second, "every task run", func() error {
		got, err := tasksCLI(t, url, "list", "jobs")
		if err != nil || !hasRow(got, "a", "completed") || !hasRow(got, "b", "completed") || !hasRow(got, "bad", "dead") {
			return fmt.Errorf("tasks: %v\n%s", err, got)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("work: %v\n%s", err, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	for _, want := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		if !slices.Contains(lines, want) {
			t.Errorf("no line %s in the worker's output:\n%s", want, out.String())
		}
	}
	if !strings.Contains(out.String(), "2 completed, 1 failed, 0 leases lost, 1 dead-lettered") {
		t.Errorf("summary:\n%s", out.String())
	}
}

// TestTasksWriteToMissingTarget: add to a queue never created, and cancel
// or retry of a task the queue does not hold, are refused before anything
// is written.
func TestTasksWriteToMissingTarget(t *testing.T) {
	url := kvNode(t)
	l := testnats.Log(t, url, transport.Config{})
	if out, err := tasksCLI(t, url, "create", "mail"); err != nil {
		t.Fatal(err, out)
	}
	for _, c := range []struct {
		args []string
		want error
	}{
		{[]string{"add", "ghost", `{"to":"a@b"}`, "--id", "x"}, tasks.ErrNoQueue},
		{[]string{"cancel", "ghost", "x"}, tasks.ErrNoQueue},
		{[]string{"cancel", "mail", "nope"}, tasks.ErrNoTask},
		{[]string{"retry", "mail", "nope"}, tasks.ErrNoTask},
	} {
		out, err := tasksCLI(t, url, c.args...)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "nothing written") {
			t.Errorf("tasks %q: %v, want %v\n%s", c.args, err, c.want, out)
		}
	}
	for esk, want := range map[string]uint64{"tasks.ghost": 0, "tasks.mail": 1} {
		if n, err := l.Count(context.Background(), esk); err != nil || n != want {
			t.Errorf("%s holds %d events (%v), want %d", esk, n, err, want)
		}
	}
}
