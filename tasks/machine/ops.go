package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
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
)

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
}

// args is a parsed operation.
type args struct {
	op        string
	id        string
	worker    string
	attempt   int
	priority  int64
	notBefore hlc.Timestamp
	lease     time.Duration // 0: the queue's
	payload   json.RawMessage
	result    json.RawMessage
	errText   string
	config    Config
}

// Apply applies one event and says what it did. An event that is
// rejected changes nothing.
func (q *Queue) Apply(ev Event) Outcome {
	o := Outcome{Index: ev.Index}
	if reason := q.apply(ev, &o); reason != "" {
		o.Kind, o.Reason = KindRejected, reason
	}
	return o
}

func (q *Queue) apply(ev Event, o *Outcome) string {
	if ev.Time.WallTime < 0 {
		return "event time before the Unix epoch"
	}
	f, reason := strict.Parse(ev.Data, "operation")
	if reason != "" {
		return reason
	}
	a, reason := parse(f, o)
	if reason != "" {
		return reason
	}
	if q.cfg == nil && a.op != OpCreateQueue {
		return "queue not created"
	}
	now := ev.Time
	switch a.op {
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

// parse reads and checks the fields of an operation, filling o's fields
// as they are read.
func parse(f strict.Fields, o *Outcome) (*args, string) {
	op, reason := f.String("op")
	if reason != "" {
		return nil, reason
	}
	o.Op = op
	names, ok := opFields[op]
	if !ok {
		return nil, "unknown op " + strict.Quote(op)
	}
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if name != "op" && !slices.Contains(names, name) {
			return nil, "unknown field " + strict.Quote(name)
		}
	}
	a := &args{op: op, config: DefaultConfig()}
	for _, name := range names {
		if reason := a.field(f, name); reason != "" {
			return nil, reason
		}
		o.TaskID, o.Worker, o.Attempt = a.id, a.worker, a.attempt
	}
	if op == OpCreateQueue {
		return a, a.config.validate()
	}
	return a, ""
}

// field reads one field into a.
func (a *args) field(f strict.Fields, name string) string {
	var reason string
	switch name {
	case "id":
		if a.op != OpClaim || f.Present(name) {
			a.id, reason = f.String(name)
		}
	case "worker":
		a.worker, reason = f.String(name)
	case "attempt":
		var n int64
		if n, reason = f.PositiveInt(name); reason == "" && n > MaxAttemptsLimit {
			reason = "attempt out of range"
		}
		a.attempt = int(n)
	case "max_attempts":
		if f.Present(name) {
			var n int64
			if n, reason = f.PositiveInt(name); n > MaxAttemptsLimit {
				n = MaxAttemptsLimit + 1 // validate rejects it
			}
			a.config.MaxAttempts = int(n)
		}
	case "lease":
		if f.Present(name) {
			a.lease, reason = duration(f, name, name)
			if reason == "" && a.lease <= 0 {
				reason = "lease must be positive"
			}
			a.config.Lease = a.lease
		}
	case "backoff":
		if f.Present(name) {
			reason = a.backoff(f[name])
		}
	case "priority":
		if f.Present(name) {
			a.priority, reason = integer(f, name)
		}
	case "not_before":
		if f.Present(name) {
			var s string
			if s, reason = f.String(name); reason == "" {
				var err error
				if a.notBefore, err = hlc.Parse(s); err != nil {
					reason = "not_before must be an HLC timestamp"
				}
			}
		}
	case "payload":
		a.payload = compact(f[name])
	case "result":
		a.result = compact(f[name])
	case "error":
		if f.Present(name) && json.Unmarshal(f[name], &a.errText) != nil {
			reason = "error must be a string"
		}
	}
	return reason
}

// backoff reads create_queue's backoff object; absent fields keep their
// defaults.
func (a *args) backoff(raw json.RawMessage) string {
	f, reason := strict.Parse(raw, "backoff")
	if reason != "" {
		return reason
	}
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if name != "initial" && name != "factor" && name != "max" {
			return "unknown field " + strict.Quote("backoff."+name)
		}
	}
	b := &a.config.Backoff
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
	var s string
	if json.Unmarshal(f[name], &s) != nil {
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
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return json.RawMessage("null") // not reached: strict.Parse checked it
	}
	return b.Bytes()
}
