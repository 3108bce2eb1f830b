package machine

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/hlc"
)

// ErrMalformed is wrapped by every [*DecodeError].
var ErrMalformed = errors.New("machine: malformed operation")

// DecodeError says why an operation does not decode. Reason is the
// reason [Queue.Apply] gives when it rejects the same bytes.
type DecodeError struct {
	Reason string
}

func (e *DecodeError) Error() string { return "machine: malformed operation: " + e.Reason }

// Unwrap makes errors.Is(err, ErrMalformed) true.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

// Op is a decoded operation. Fields that the op does not have are zero.
type Op struct {
	Op     string // one of the Op constants
	ID     string // the task; "" only in a claim without id
	Worker string // claim, heartbeat, complete, fail
	// Attempt is the attempt a heartbeat, complete or fail reports on.
	Attempt int
	// Priority and NotBefore are an enqueue's; zero is the default.
	Priority  int64
	NotBefore hlc.Timestamp
	// Lease is a claim's lease; 0 means the queue's.
	Lease time.Duration
	// Payload (enqueue) and Result (complete) are compact JSON, "null"
	// when absent.
	Payload json.RawMessage
	Result  json.RawMessage
	// Error is a fail's error text.
	Error string
	// Config is a create_queue's configuration, defaults applied.
	Config Config
	// Ops are a batch's operations.
	Ops []Op
}

// Decode reads an operation in the format of the package documentation
// and checks it as [Queue.Apply] does before looking at the queue's
// state: an operation that Decode accepts is never rejected as malformed,
// and one it refuses is rejected by Apply with the same reason. The error
// is a [*DecodeError].
//
// Decode allocates a small constant multiple of len(data) at most.
func Decode(data []byte) (Op, error) {
	var o Outcome
	a, reason := decode(data, &o)
	if reason != "" {
		return Op{}, &DecodeError{Reason: reason}
	}
	return *a, nil
}

// MarshalJSON encodes o canonically: "op" first, then the op's fields in
// the order of the package documentation, each only when it differs from
// its default (a create_queue lists its whole configuration). Decoding
// the bytes gives o back. An o that does not encode a valid operation
// gives the [*DecodeError] that [Decode] gives for its encoding.
func (o Op) MarshalJSON() ([]byte, error) {
	b := o.AppendJSON(make([]byte, 0, 64+len(o.Payload)+len(o.Result)+len(o.Error)))
	if _, err := Decode(b); err != nil {
		return nil, err
	}
	return b, nil
}

// AppendJSON appends the canonical encoding of o to b, as MarshalJSON
// does but without checking it.
func (o Op) AppendJSON(b []byte) []byte {
	b = append(b, `{"op":`...)
	b = appendString(b, o.Op)
	str := func(name, v string) {
		if v != "" {
			b = append(b, `,"`+name+`":`...)
			b = appendString(b, v)
		}
	}
	raw := func(name string, v json.RawMessage) {
		if len(v) > 0 && string(v) != "null" {
			b = append(b, `,"`+name+`":`...)
			b = append(b, v...)
		}
	}
	for _, name := range opFields[o.Op] {
		switch name {
		case "id":
			str(name, o.ID)
		case "worker":
			str(name, o.Worker)
		case "attempt":
			if o.Attempt != 0 {
				b = append(b, `,"attempt":`...)
				b = strconv.AppendInt(b, int64(o.Attempt), 10)
			}
		case "priority":
			if o.Priority != 0 {
				b = append(b, `,"priority":`...)
				b = strconv.AppendInt(b, o.Priority, 10)
			}
		case "not_before":
			if !o.NotBefore.IsZero() {
				str(name, o.NotBefore.String())
			}
		case "lease":
			if o.Op == OpCreateQueue {
				str(name, o.Config.Lease.String())
			} else if o.Lease != 0 {
				str(name, o.Lease.String())
			}
		case "max_attempts":
			b = append(b, `,"max_attempts":`...)
			b = strconv.AppendInt(b, int64(o.Config.MaxAttempts), 10)
		case "backoff":
			c := o.Config.Backoff
			b = append(b, `,"backoff":{"initial":`...)
			b = appendString(b, c.Initial.String())
			b = append(b, `,"factor":`...)
			b = strconv.AppendInt(b, c.Factor, 10)
			b = append(b, `,"max":`...)
			b = appendString(b, c.Max.String())
			b = append(b, '}')
		case "payload":
			raw(name, o.Payload)
		case "result":
			raw(name, o.Result)
		case "error":
			str(name, o.Error)
		case "ops":
			b = append(b, `,"ops":[`...)
			for i, op := range o.Ops {
				if i > 0 {
					b = append(b, ',')
				}
				b = op.AppendJSON(b)
			}
			b = append(b, ']')
		}
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	return append(b, strict.Quote(s)...)
}
