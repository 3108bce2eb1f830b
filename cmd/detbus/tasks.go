package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/machine"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nuid"
)

// taskCommands are the subcommands of `detbus tasks`.
var taskCommands = []command{
	{"create", "<queue> [--lease 30s] [--max-attempts 5] [--backoff 1s]", "create a queue", runTasksCreate},
	{"add", "<queue> [json] [--id ID] [--priority N] [--delay D]", "enqueue a task (idempotent by id)", runTasksAdd},
	{"list", "[<queue>] [--state S] [--json]", "list queues, or a queue's tasks", runTasksList},
	{"show", "<queue> <id>", "show a task as JSON", runTasksShow},
	{"retry", "<queue> <id>", "requeue a dead task", runTasksRetry},
	{"cancel", "<queue> <id>", "cancel a task", runTasksCancel},
	{"dead", "<queue> [--json]", "list a queue's dead letters", runTasksDead},
	{"rejected", "<queue> [--refused]", "list a queue's malformed (or refused) events", runTasksRejected},
	{"work", "<queue> [--concurrency N] [--exec CMD]", "run a worker process", runTasksWork},
}

func runTasks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "tasks: ", taskCommands, tasksUsage, args, stdout, stderr)
}

func tasksUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: detbus tasks <command> [arguments]")
	fmt.Fprintln(w)
	for _, c := range taskCommands {
		fmt.Fprintf(w, "  %-9s %-56s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Queue <q> is ESK tasks.<q>. Run 'detbus tasks <command> -h' for a command's flags.")
}

// taskFlags are the flags of every tasks command.
type taskFlags struct {
	clientFlags
	fs *flag.FlagSet
}

func newTaskFlags(name string, stderr io.Writer) *taskFlags {
	f := &taskFlags{fs: newFlags("tasks "+name, stderr)}
	f.register(f.fs)
	return f
}

// parse parses args and checks the queue argument, the first.
func (f *taskFlags) parse(args []string, minArgs, maxArgs int) ([]string, error) {
	pos, err := parse(f.fs, args, minArgs, maxArgs)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		if err := tasks.ValidateQueue(pos[0]); err != nil {
			return nil, usagef("%v", err)
		}
	}
	return pos, nil
}

// client opens the log and a task client that has folded it.
func (f *taskFlags) client(ctx context.Context) (*tasks.Client, func(), error) {
	l, err := f.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	octx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	c, err := tasks.Open(octx, l, tasks.Options{})
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); l.Close() }, nil
}

// taskReader is what the read commands need of the task queues: a node's,
// asked by request, or a client folded here.
type taskReader interface {
	Queues(ctx context.Context) ([]tasks.QueueInfo, error)
	List(ctx context.Context, queue string, states ...machine.State) ([]machine.Task, error)
	Show(ctx context.Context, queue, id string) (machine.Task, error)
	Rejections(ctx context.Context, queue string) (tasks.RejectionsReply, error)
}

type localTasks struct{ c *tasks.Client }

func (l localTasks) Queues(context.Context) ([]tasks.QueueInfo, error) { return l.c.Queues(), nil }

func (l localTasks) List(_ context.Context, queue string, states ...machine.State) ([]machine.Task, error) {
	return l.c.List(queue, states...)
}

func (l localTasks) Show(_ context.Context, queue, id string) (machine.Task, error) {
	return l.c.Show(queue, id)
}

func (l localTasks) Rejections(_ context.Context, queue string) (tasks.RejectionsReply, error) {
	info, err := l.c.Queue(queue)
	if err != nil {
		return tasks.RejectionsReply{}, err
	}
	bad, refused, err := l.c.Rejections(queue)
	return tasks.RejectionsReply{Queue: info, Malformed: bad, Refused: refused}, err
}

// read runs a read command against a running node's queues, or, when no
// node serves them, against a client that folds the log here (and says
// so on stderr).
func (f *taskFlags) read(ctx context.Context, stderr io.Writer, do func(taskReader) error) error {
	l, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	err = do(tasks.NewRemote(l))
	if !errors.Is(err, transport.ErrNoService) {
		return err
	}
	fmt.Fprintln(stderr, "tasks: no node serves the queues; folding the log here")
	octx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	c, err := tasks.Open(octx, l, tasks.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	return do(localTasks{c})
}

// opResult is what the write commands print: where the operation landed
// and what it did.
type opResult struct {
	Queue   string `json:"queue"`
	Task    string `json:"task,omitempty"`
	Index   uint64 `json:"index"`
	Seq     uint64 `json:"seq"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

// write appends op, waits for the fold to decide it, and prints the
// outcome; a refused operation is an error.
func (f *taskFlags) write(ctx context.Context, stdout io.Writer, queue string, op machine.Op) error {
	if _, err := op.MarshalJSON(); err != nil {
		return usagef("%v", err)
	}
	c, closeAll, err := f.client(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	if err := checkTarget(c, queue, op); err != nil {
		return err
	}
	pos, err := c.Append(ctx, queue, op)
	if err != nil {
		return err
	}
	o, err := c.Outcome(ctx, pos)
	if err != nil {
		return err
	}
	res := opResult{Queue: queue, Task: o.TaskID, Index: pos.Index, Seq: pos.Seq, Outcome: string(o.Kind), Reason: o.Reason}
	out, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(out))
	if o.Kind == machine.KindRejected {
		return fmt.Errorf("%s on queue %q refused: %s", op.Op, queue, o.Reason)
	}
	return nil
}

// checkTarget refuses, before anything is written, an operation on a
// queue the folded log has not created or, for a cancel or a requeue, on
// a task it does not hold: the fold would refuse it, but only after the
// event had landed in the log.
func checkTarget(c *tasks.Client, queue string, op machine.Op) error {
	if op.Op == machine.OpCreateQueue {
		return nil
	}
	if info, err := c.Queue(queue); err != nil || !info.Created {
		return fmt.Errorf("%w: %q is not created, nothing written (create it with: detbus tasks create %s)", tasks.ErrNoQueue, queue, queue)
	}
	if op.Op == machine.OpCancel || op.Op == machine.OpRequeue {
		if _, err := c.Show(queue, op.ID); err != nil {
			return fmt.Errorf("%w, nothing written", err)
		}
	}
	return nil
}

func runTasksCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("create", stderr)
	def := machine.DefaultConfig()
	lease := f.fs.Duration("lease", def.Lease, "lease of a claim")
	attempts := f.fs.Int("max-attempts", def.MaxAttempts, "claims a task may have before it is dead")
	initial := f.fs.Duration("backoff", def.Backoff.Initial, "delay before the retry of a first failed attempt")
	factor := f.fs.Int64("backoff-factor", def.Backoff.Factor, "factor of the delay after each further failure")
	maxDelay := f.fs.Duration("backoff-max", def.Backoff.Max, "longest delay before a retry")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	cfg := machine.Config{Lease: *lease, MaxAttempts: *attempts, Backoff: machine.Backoff{Initial: *initial, Factor: *factor, Max: *maxDelay}}
	return f.write(ctx, stdout, pos[0], machine.Op{Op: machine.OpCreateQueue, Config: cfg})
}

func runTasksAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("add", stderr)
	id := f.fs.String("id", "", "task id, the idempotency key (default: a new unique id)")
	priority := f.fs.Int64("priority", 0, "claims take higher priorities first")
	delay := f.fs.Duration("delay", 0, "not due before this long from now")
	notBefore := f.fs.String("not-before", "", "not due before this time (RFC 3339 or an HLC timestamp)")
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return helpOK(err)
	}
	op := machine.Op{Op: machine.OpEnqueue, ID: *id, Priority: *priority}
	if op.ID == "" {
		op.ID = nuid.Next()
	}
	if len(pos) == 2 {
		if !json.Valid([]byte(pos[1])) {
			var v any
			return usagef("payload is not valid JSON: %v", json.Unmarshal([]byte(pos[1]), &v))
		}
		op.Payload = json.RawMessage(pos[1])
	}
	switch {
	case *delay != 0 && *notBefore != "":
		return usagef("give --delay or --not-before, not both")
	case *delay < 0:
		return usagef("--delay %v is negative", *delay)
	case *delay > 0:
		op.NotBefore = hlc.Timestamp{WallTime: time.Now().Add(*delay).UnixNano()}
	case *notBefore != "":
		if op.NotBefore, err = hlc.Parse(*notBefore); err != nil {
			t, terr := time.Parse(time.RFC3339Nano, *notBefore)
			if terr != nil {
				return usagef("--not-before %q is neither RFC 3339 nor an HLC timestamp", *notBefore)
			}
			op.NotBefore = hlc.Timestamp{WallTime: t.UnixNano()}
		}
	}
	return f.write(ctx, stdout, pos[0], op)
}

func runTasksRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runTaskOp(ctx, "retry", machine.OpRequeue, args, stdout, stderr)
}

func runTasksCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runTaskOp(ctx, "cancel", machine.OpCancel, args, stdout, stderr)
}

func runTaskOp(ctx context.Context, name, op string, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags(name, stderr)
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return helpOK(err)
	}
	return f.write(ctx, stdout, pos[0], machine.Op{Op: op, ID: pos[1]})
}

func runTasksList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("list", stderr)
	state := f.fs.String("state", "", "only tasks in this state: pending, claimed, completed, dead or cancelled")
	asJSON := f.fs.Bool("json", false, "print tasks as JSON lines")
	pos, err := f.parse(args, 0, 1)
	if err != nil {
		return helpOK(err)
	}
	var states []machine.State
	switch s := machine.State(*state); s {
	case "":
	case machine.StatePending, machine.StateClaimed, machine.StateCompleted, machine.StateDead, machine.StateCancelled:
		states = append(states, s)
	default:
		return usagef("--state %q is not a task state", *state)
	}
	return f.read(ctx, stderr, func(r taskReader) error {
		if len(pos) == 0 {
			qs, err := r.Queues(ctx)
			if err != nil {
				return err
			}
			return printQueues(stdout, qs)
		}
		list, err := r.List(ctx, pos[0], states...)
		if err != nil {
			return err
		}
		return printTasks(stdout, list, *asJSON)
	})
}

func runTasksDead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("dead", stderr)
	asJSON := f.fs.Bool("json", false, "print tasks as JSON lines")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	return f.read(ctx, stderr, func(r taskReader) error {
		list, err := r.List(ctx, pos[0], machine.StateDead)
		if err != nil {
			return err
		}
		return printTasks(stdout, list, *asJSON)
	})
}

func runTasksShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("show", stderr)
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return helpOK(err)
	}
	return f.read(ctx, stderr, func(r taskReader) error {
		t, err := r.Show(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		out, err := json.MarshalIndent(taskView(t), "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(out))
		return err
	})
}

func runTasksRejected(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("rejected", stderr)
	refused := f.fs.Bool("refused", false, "list well-formed operations refused in the queue's state instead")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	var rej tasks.RejectionsReply
	if err := f.read(ctx, stderr, func(r taskReader) (err error) {
		rej, err = r.Rejections(ctx, pos[0])
		return err
	}); err != nil {
		return err
	}
	bad, count := rej.Malformed, rej.Queue.Malformed
	if *refused {
		bad, count = rej.Refused, rej.Queue.Refused
	}
	fmt.Fprintf(stdout, "%d rejected, the newest %d kept\n", count, len(bad))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "INDEX\tSEQ\tREASON\tEVENT\n")
	for _, r := range bad {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", r.Index, r.Seq, r.Reason, clip(string(r.Data), 80))
	}
	return tw.Flush()
}

// taskJSON is a task as the CLI prints it: times in RFC 3339.
type taskJSON struct {
	ID         string          `json:"id"`
	State      machine.State   `json:"state"`
	Priority   int64           `json:"priority,omitempty"`
	Index      uint64          `json:"enqueue_index"`
	Payload    json.RawMessage `json:"payload"`
	NotBefore  string          `json:"not_before,omitempty"`
	Attempts   int             `json:"attempts,omitempty"`
	Worker     string          `json:"worker,omitempty"`
	LeaseUntil string          `json:"lease_until,omitempty"`
	LastError  string          `json:"last_error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
}

func taskView(t machine.Task) taskJSON {
	return taskJSON{ID: t.ID, State: t.State, Priority: t.Priority, Index: t.EnqueueIndex, Payload: t.Payload,
		NotBefore: hlcTime(t.NotBefore), Attempts: t.Attempts, Worker: t.Worker, LeaseUntil: hlcTime(t.LeaseUntil),
		LastError: t.LastError, Result: t.Result}
}

func hlcTime(ts hlc.Timestamp) string {
	if ts.IsZero() {
		return ""
	}
	return time.Unix(0, ts.WallTime).UTC().Format("2006-01-02T15:04:05.000Z")
}

func printTasks(w io.Writer, list []machine.Task, asJSON bool) error {
	if asJSON {
		for _, t := range list {
			out, err := json.Marshal(taskView(t))
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(out))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tSTATE\tPRIORITY\tATTEMPTS\tWORKER\tDUE/LEASE\tLAST ERROR\n")
	for _, t := range list {
		when := hlcTime(t.NotBefore)
		if t.State == machine.StateClaimed {
			when = hlcTime(t.LeaseUntil)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.ID, t.State, t.Priority, t.Attempts, t.Worker, when, clip(t.LastError, 60))
	}
	return tw.Flush()
}

func printQueues(w io.Writer, qs []tasks.QueueInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "QUEUE\tPENDING\tCLAIMED\tCOMPLETED\tDEAD\tCANCELLED\tMALFORMED\tEVENTS\tCONFIG\n")
	for _, q := range qs {
		config := "not created"
		if q.Created {
			c := q.Config
			config = fmt.Sprintf("lease %v, %d attempts, backoff %v x%d up to %v", c.Lease, c.MaxAttempts, c.Backoff.Initial, c.Backoff.Factor, c.Backoff.Max)
		}
		n := q.Tasks
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", q.Name, n[machine.StatePending], n[machine.StateClaimed],
			n[machine.StateCompleted], n[machine.StateDead], n[machine.StateCancelled], q.Malformed, q.Events, config)
	}
	return tw.Flush()
}

// clip shortens s to at most n runes on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
