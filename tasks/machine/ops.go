package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/hlc"
)

// The ops an operation may name.
const (
	OpCreateQueue = "create_queue"
	OpEnqueue     = "enqueue"
	OpClaim       = "claim"
	OpHeartbeat   = "heartbeat"
	OpComplete    = "complete"
	OpFail        = "fail"
	OpCancel      = "cancel"
	OpRequeue     = "requeue"
	OpBatch       = "batch"
)

// MaxBatchOps is the most operations a batch may hold.
const MaxBatchOps = 1000

// opFields lists each op's fields besides "op", in the order they are
// checked.
var opFields = map[string][]string{
	OpCreateQueue: {"lease", "max_attempts", "backoff"},
	OpEnqueue:     {"id", "payload", "priority", "not_before"},
	OpClaim:       {"id", "worker", "lease"},
	OpHeartbeat:   {"id", "worker", "attempt"},
	OpComplete:    {"id", "worker", "attempt", "result"},
	OpFail:        {"id", "worker", "attempt", "error"},
	OpCancel:      {"id"},
	OpRequeue:     {"id"},
	OpBatch:       {"ops"},
}

// Apply applies one event and says what it did. An event that is
// rejected changes nothing.
func (q *Queue) Apply(ev Event) Outcome {
	o := Outcome{Index: ev.Index}
	if ev.Time.WallTime < 0 {
		o.Kind, o.Reason, o.Malformed = KindRejected, "event time before the Unix epoch", true
		return o
	}
	a, reason := decode(ev.Data, &o)
	if reason != "" {
		o.Kind, o.Reason, o.Malformed = KindRejected, reason, true
		return o
	}
	if a.Op != OpBatch {
		q.exec(a, ev, &o)
		return o
	}
	o.Kind, o.Ops = KindBatch, make([]Outcome, len(a.Ops))
	for i := range a.Ops {
		b := &a.Ops[i]
		o.Ops[i] = Outcome{Index: ev.Index, Op: b.Op, TaskID: b.ID, Worker: b.Worker, Attempt: b.Attempt}
		q.exec(b, ev, &o.Ops[i])
	}
	return o
}

// exec applies one decoded operation and sets the outcome's kind.
func (q *Queue) exec(a *Op, ev Event, o *Outcome) {
	if reason := q.execOp(a, ev, o); reason != "" {
		o.Kind, o.Reason = KindRejected, reason
	} else if t := q.tasks[o.TaskID]; t != nil {
		q.live.reindex(t) // every op changes at most the task it names or wins
	}
}

func (q *Queue) execOp(a *Op, ev Event, o *Outcome) string {
	if q.cfg == nil && a.Op != OpCreateQueue {
		return "queue not created"
	}
	now := ev.Time
	switch a.Op {
	case OpCreateQueue:
		return q.create(a, o)
	case OpEnqueue:
		return q.enqueue(a, ev.Index, o)
	case OpClaim:
		return q.claim(a, now, o)
	case OpCancel:
		return q.cancel(a, o)
	case OpRequeue:
		return q.requeue(a, o)
	}
	return q.report(a, now, o)
}

// decode parses and checks an operation, filling o's fields as they are
// read. It returns the reason the operation is malformed, or "".
func decode(data []byte, o *Outcome) (*Op, string) {
	f, reason := splitFields(data, "operation")
	if reason != "" {
		return nil, reason
	}
	return parse(f, o, false)
}

// parse reads and checks the fields of an operation, filling o's fields
// as they are read; inner is true for the operations of a batch.
func parse(f strict.Fields, o *Outcome, inner bool) (*Op, string) {
	op, reason := fieldString(f, "op")
	if reason != "" {
		return nil, reason
	}
	o.Op = op
	names, ok := opFields[op]
	switch {
	case !ok:
		return nil, "unknown op " + strict.Quote(op)
	case inner && op == OpBatch:
		return nil, "a batch cannot hold a batch"
	}
	if name, ok := unknownField(f, func(name string) bool { return name == "op" || slices.Contains(names, name) }); ok {
		return nil, "unknown field " + strict.Quote(name)
	}
	a := &Op{Op: op}
	if op == OpCreateQueue {
		a.Config = DefaultConfig()
	}
	for _, name := range names {
		if reason := a.field(f, name); reason != "" {
			return nil, reason
		}
		o.TaskID, o.Worker, o.Attempt = a.ID, a.Worker, a.Attempt
	}
	if op == OpCreateQueue {
		a.Lease = 0 // it is Config.Lease
		return a, a.Config.validate()
	}
	return a, ""
}

// field reads one field into a.
func (a *Op) field(f strict.Fields, name string) string {
	var reason string
	switch name {
	case "id":
		if a.Op != OpClaim || f.Present(name) {
			a.ID, reason = fieldString(f, name)
		}
	case "worker":
		a.Worker, reason = fieldString(f, name)
	case "attempt":
		var n int64
		if n, reason = f.PositiveInt(name); reason == "" && n > MaxAttemptsLimit {
			reason = "attempt out of range"
		}
		a.Attempt = int(n)
	case "max_attempts":
		if f.Present(name) {
			var n int64
			if n, reason = f.PositiveInt(name); n > MaxAttemptsLimit {
				n = MaxAttemptsLimit + 1 // validate rejects it
			}
			a.Config.MaxAttempts = int(n)
		}
	case "lease":
		if f.Present(name) {
			a.Lease, reason = duration(f, name, name)
			if reason == "" && a.Lease <= 0 {
				reason = "lease must be positive"
			}
			if a.Op == OpCreateQueue {
				a.Config.Lease = a.Lease
			}
		}
	case "backoff":
		if f.Present(name) {
			reason = a.backoff(f[name])
		}
	case "priority":
		if f.Present(name) {
			a.Priority, reason = integer(f, name)
		}
	case "not_before":
		if f.Present(name) {
			var s string
			if s, reason = fieldString(f, name); reason == "" {
				var err error
				if a.NotBefore, err = hlc.Parse(s); err != nil {
					reason = "not_before must be an HLC timestamp"
				}
			}
		}
	case "payload":
		a.Payload = compact(f[name])
	case "result":
		a.Result = compact(f[name])
	case "ops":
		reason = a.batch(f, name)
	case "error":
		if f.Present(name) {
			var ok bool
			if a.Error, ok = jsonString(f[name]); !ok {
				reason = "error must be a string"
			}
		}
	}
	return reason
}

// batch reads a batch's operations: a JSON array of 1 to MaxBatchOps
// objects, each a valid operation other than a batch. A fault in one is
// the batch's, prefixed with its position ("ops[2]: missing id").
func (a *Op) batch(f strict.Fields, name string) string {
	if !f.Present(name) {
		return "missing " + name
	}
	raw := f[name]
	if raw[0] != '[' {
		return name + " must be a JSON array"
	}
	n := countArray(raw)
	switch {
	case n == 0:
		return name + " must not be empty"
	case n > MaxBatchOps:
		return name + " holds more than " + itoa(MaxBatchOps) + " operations"
	}
	a.Ops = make([]Op, 0, n)
	fields := make(strict.Fields, 4) // reused: parse keeps nothing of it
	for e := range arrayElems(raw) {
		var o Outcome
		clear(fields)
		reason := splitInto(fields, e, "operation")
		var b *Op
		if reason == "" {
			b, reason = parse(fields, &o, true)
		}
		if reason != "" {
			return name + "[" + itoa(len(a.Ops)) + "]: " + reason
		}
		a.Ops = append(a.Ops, *b)
	}
	return ""
}

// backoff reads create_queue's backoff object; absent fields keep their
// defaults.
func (a *Op) backoff(raw json.RawMessage) string {
	f, reason := splitFields(raw, "backoff")
	if reason != "" {
		return reason
	}
	if name, ok := unknownField(f, func(name string) bool { return name == "initial" || name == "factor" || name == "max" }); ok {
		return "unknown field " + strict.Quote("backoff."+name)
	}
	b := &a.Config.Backoff
	if f.Present("initial") {
		if b.Initial, reason = duration(f, "initial", "backoff.initial"); reason != "" {
			return reason
		}
	}
	if f.Present("factor") {
		if b.Factor, reason = f.PositiveInt("factor"); reason != "" {
			return "backoff." + reason
		}
	}
	if f.Present("max") {
		b.Max, reason = duration(f, "max", "backoff.max")
	}
	return reason
}

// duration reads a present field holding a Go duration string; label
// names it in reasons.
func duration(f strict.Fields, name, label string) (time.Duration, string) {
	s, ok := jsonString(f[name])
	if !ok {
		return 0, label + " must be a string"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, label + " must be a duration"
	}
	return d, ""
}

// integer reads a present integer field from its literal, like
// [strict.Fields.PositiveInt] but of any sign.
func integer(f strict.Fields, name string) (int64, string) {
	lit := string(bytes.TrimSpace(f[name]))
	if lit == "" || (lit[0] != '-' && (lit[0] < '0' || lit[0] > '9')) {
		return 0, name + " must be an integer"
	}
	n, err := strconv.ParseInt(lit, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, name + " out of range"
	}
	if err != nil {
		return 0, name + " must be an integer"
	}
	return n, ""
}

// compact returns raw without insignificant space, or null when absent.
func compact(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return json.RawMessage("null")
	}
	if bytes.IndexAny(raw, " \t\n\r") < 0 {
		return bytes.Clone(raw) // already compact
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return json.RawMessage("null") // not reached: splitFields checked it
	}
	return b.Bytes()
}
