package machine_test

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"

	"github.com/detbus/detbus/tasks/machine"
)

// decodeAllocLimit is the most a decode of data may allocate: a constant
// factor per input byte plus a fixed allowance.
func decodeAllocLimit(data []byte) uint64 {
	return 32*uint64(len(data)) + 16<<10
}

// decodeMeasured decodes data and reports the bytes allocated meanwhile.
func decodeMeasured(data []byte) (machine.Op, uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	op, err := machine.Decode(data)
	runtime.ReadMemStats(&after)
	return op, after.TotalAlloc - before.TotalAlloc, err
}

// FuzzDecode checks the operation decoder on any input: it never panics,
// allocates a bounded amount, refuses exactly what Apply rejects as
// malformed (with the same reason), and what it accepts survives an
// encode and decode unchanged, the encoding being canonical.
func FuzzDecode(f *testing.F) {
	for _, op := range []string{
		`{"op":"create_queue","lease":"30s","max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m"}}`,
		`{"op":"enqueue","id":"t1","payload":{"to":"a@b"},"priority":-3,"not_before":"1700000000000000000.0000000000"}`,
		`{"op":"claim","worker":"w1","lease":"1.5s"}`,
		`{"op":"complete","id":"t1","worker":"w1","attempt":1,"result":[1,"x",null]}`,
		`{"op":"fail","id":"t1","worker":"w1","attempt":2,"error":"smtp \u2028 timeout"}`,
		`{"op":"batch","ops":[{"op":"complete","id":"t1","worker":"w1","attempt":1},{"op":"claim","worker":"w1"}]}`,
	} {
		f.Add([]byte(op))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		op, alloc, err := decodeMeasured(data)
		if limit := decodeAllocLimit(data); alloc > limit {
			t.Fatalf("decoding %d bytes allocated %d bytes, limit %d", len(data), alloc, limit)
		}
		q := machine.New("q")
		q.Apply(machine.Event{Time: at(0), Data: []byte(`{"op":"create_queue"}`)})
		o := q.Apply(machine.Event{Index: 1, Time: at(1), Data: data})
		if err != nil {
			var de *machine.DecodeError
			if !errors.As(err, &de) || !errors.Is(err, machine.ErrMalformed) {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			if o.Kind != machine.KindRejected || o.Reason != de.Reason {
				t.Fatalf("Decode refuses with %q, Apply gives %s %q", de.Reason, o.Kind, o.Reason)
			}
			return
		}
		enc, err := op.MarshalJSON()
		if err != nil {
			t.Fatalf("encoding a decoded op %+v: %v", op, err)
		}
		again, err := machine.Decode(enc)
		if err != nil {
			t.Fatalf("decoding the encoding %s: %v", enc, err)
		}
		if !reflect.DeepEqual(op, again) {
			t.Fatalf("op changed by an encode and decode:\nfirst:  %+v\nsecond: %+v\nencoding: %s", op, again, enc)
		}
		if enc2, _ := again.MarshalJSON(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not canonical:\n%s\n%s", enc, enc2)
		}
	})
}

// TestDecodeAllocation: decoding a large operation allocates within the
// bound the fuzz target asserts.
func TestDecodeAllocation(t *testing.T) {
	big := []byte(`{"op":"enqueue","id":"t1","payload":[` + string(bytes.Repeat([]byte(`{"a":[1,2,{"b":"cc"}]},`), 20000)) + `0]}`)
	batch := []byte(`{"op":"batch","ops":[` + string(bytes.Repeat([]byte(`{"op":"cancel","id":"x"},`), machine.MaxBatchOps-1)) + `{"op":"cancel","id":"x"}]}`)
	for _, data := range [][]byte{big, batch, bytes.Repeat([]byte("["), 100000), []byte(`{"op":"claim","worker":"w"}`)} {
		_, alloc, _ := decodeMeasured(data)
		if limit := decodeAllocLimit(data); alloc > limit {
			t.Errorf("decoding %d bytes allocated %d bytes, limit %d", len(data), alloc, limit)
		}
		t.Logf("%d bytes: %d allocated (%.1f per byte)", len(data), alloc, float64(alloc)/float64(len(data)))
	}
}
