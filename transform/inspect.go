package transform

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detbus/detbus/transport"
)

// What a DET's observers read: an instance's state as its status tells
// it, the newest snapshot of a generation as stored, the claims of a
// snapshot position and the rejections a generation recorded. These are
// reads for `detbus status` and the node's transforms page; nothing here
// decides a restore point (see [SnapshotStore.Latest]).

// Instance states, as [Status.State] names them.
const (
	StateRunning  = "running"
	StateStopped  = "stopped"  // it returned from Run (see Status.Stopped for why)
	StateStale    = "stale"    // killed, or cut off from NATS: its heartbeat stopped
	StateShadow   = "shadow"   // a shadow, comparing without writing
	StateObserver = "observer" // after a divergence under ObserveOnDivergence
)

// State names what the status says the instance is doing at now: stopped,
// stale (see [Status.Stale]), shadow, observer or running, the first that
// applies.
func (s Status) State(now time.Time) string {
	switch {
	case s.Stopped != "":
		return StateStopped
	case s.Stale(now):
		return StateStale
	case s.Shadow:
		return StateShadow
	case s.Observer:
		return StateObserver
	}
	return StateRunning
}

// GenerationName is the name under which generation gen of the DET name
// keeps its snapshots and status: name for the first, "<name>.g<N>" after.
func GenerationName(name string, gen uint) string { return generationName(name, gen) }

// RejectionsESK is where the runner records the inputs that the DET
// rejected, for a generation whose output ESK is output (see
// [GenerationOutput]).
func RejectionsESK(output string) string { return output + ".rejected" }

// Rejection is what the runner records on [RejectionsESK] ("<output>.rejected")
// for an input whose step returned an error or panicked.
type Rejection struct {
	Input struct {
		ESK   string `json:"esk"`
		Index uint64 `json:"index"`
		Seq   uint64 `json:"seq"`
	} `json:"input"`
	Error string `json:"error"`
}

// Newest returns the newest snapshot stored for generation gen of the DET
// name, as stored, whether or not the log confirms it (read its
// [Claims]); ok is false when there is none. A state kept in the object
// bucket is not read: State is then empty and Object names it. An inline
// state is checked against the hash ([ErrSnapshotCorrupt] when it does
// not match, or the entry does not decode).
func (st *SnapshotStore) Newest(ctx context.Context, name string, gen uint) (s Snapshot, ok bool, err error) {
	prefix := st.prefix(generationName(name, gen))
	keys, err := st.kv.Keys(ctx, prefix+"*")
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: list snapshots: %w", err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool {
		_, err := strconv.ParseUint(strings.TrimPrefix(k, prefix), 10, 64)
		return err != nil
	})
	if len(keys) == 0 {
		return Snapshot{}, false, nil
	}
	key := slices.Max(keys) // zero-padded positions
	e, err := st.kv.Get(ctx, key)
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: read snapshot %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value, &s); err != nil {
		return Snapshot{}, false, fmt.Errorf("%w: %s: %v", ErrSnapshotCorrupt, key, err)
	}
	if s.Object == "" {
		err = s.verify()
	}
	return s, true, err
}

// Claims returns the claims of the snapshots at input position inputSeq
// of the generation whose output ESK is output, in the order the log
// holds them, at most the 64 that a restore reads. A claim that does not
// decode is returned empty (its By and Hash ""), so that it agrees with
// no snapshot.
//
// Errors: as [transport.Log.Count] and [transport.Log.Get].
func Claims(ctx context.Context, log *transport.Log, output string, inputSeq uint64) ([]Claim, error) {
	esk := ClaimsESK(output, inputSeq)
	n, err := log.Count(ctx, esk)
	if err != nil {
		return nil, err
	}
	out := make([]Claim, 0, min(n, maxClaims))
	for i := range min(n, maxClaims) {
		ev, err := log.Get(ctx, esk, i)
		if err != nil {
			return nil, err
		}
		var c Claim
		if json.Unmarshal(ev.Data, &c) != nil {
			c = Claim{}
		}
		out = append(out, c)
	}
	return out, nil
}

// Agrees reports whether the claim is of snapshot s's content.
func (c Claim) Agrees(s Snapshot) bool { return c.agrees(s) }
