package transform

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/detbus/detbus/transport"
)

// DefaultSnapshotBucket is the JetStream KV bucket holding snapshots.
const DefaultSnapshotBucket = "detbus-snapshots"

var (
	// ErrSnapshotVersion is wrapped when the newest snapshot of a DET was
	// taken by another version of its logic.
	ErrSnapshotVersion = errors.New("transform: snapshot from another version")
	// ErrSnapshotCorrupt is wrapped when a stored snapshot does not decode
	// or does not match its hash.
	ErrSnapshotCorrupt = errors.New("transform: corrupt snapshot")
)

// Snapshot is a DET's state at an input position, as stored.
type Snapshot struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	InputSeq   uint64    `json:"input_seq"`  // the last input applied
	Outputs    uint64    `json:"outputs"`    // outputs emitted so far
	Rejections uint64    `json:"rejections"` // inputs rejected so far
	Hash       string    `json:"hash"`       // sha256 of State, hex
	State      []byte    `json:"state"`
	Taken      time.Time `json:"taken"` // when (not part of the compared content)
}

func newSnapshot(spec Spec, inputSeq, outputs, rejections uint64, state []byte) Snapshot {
	sum := sha256.Sum256(state)
	return Snapshot{Name: spec.Name, Version: spec.Version, InputSeq: inputSeq, Outputs: outputs,
		Rejections: rejections, Hash: hex.EncodeToString(sum[:]), State: state, Taken: time.Now().UTC()}
}

// sameContent reports whether two snapshots of one position agree.
func (s Snapshot) sameContent(o Snapshot) bool {
	return s.Name == o.Name && s.Version == o.Version && s.InputSeq == o.InputSeq &&
		s.Outputs == o.Outputs && s.Rejections == o.Rejections && s.Hash == o.Hash
}

func (s Snapshot) verify() error {
	sum := sha256.Sum256(s.State)
	if hex.EncodeToString(sum[:]) != s.Hash {
		return fmt.Errorf("%w: %s at input %d: state does not match its hash", ErrSnapshotCorrupt, s.Name, s.InputSeq)
	}
	return nil
}

// SnapshotStore keeps DET snapshots in a JetStream KV bucket, one key per
// DET and input position ("<name>.<input seq>"), so that instances that
// snapshot the same position meet on the same key and can cross-check.
type SnapshotStore struct {
	kv *transport.Bucket
}

// OpenSnapshotStore creates or binds the bucket beside log (as many
// replicas as the log's stream; values up to NATS's max payload).
func OpenSnapshotStore(ctx context.Context, log *transport.Log, bucket string) (*SnapshotStore, error) {
	if bucket == "" {
		bucket = DefaultSnapshotBucket
	}
	kv, err := log.Bucket(ctx, transport.BucketConfig{Name: bucket, Description: "detbus transform snapshots"})
	if err != nil {
		return nil, fmt.Errorf("transform: snapshot bucket %q: %w", bucket, err)
	}
	return &SnapshotStore{kv: kv}, nil
}

func snapshotKey(name string, seq uint64) string {
	return fmt.Sprintf("%s.%020d", name, seq)
}

// Save stores s unless a snapshot of the same DET and position exists; then
// it compares the two and returns the stored one and whether they agree.
func (st *SnapshotStore) Save(ctx context.Context, s Snapshot) (stored Snapshot, agree bool, err error) {
	body, err := json.Marshal(s)
	if err != nil {
		return Snapshot{}, false, err
	}
	key := snapshotKey(s.Name, s.InputSeq)
	_, err = st.kv.Create(ctx, key, body)
	if err == nil {
		st.prune(ctx, s.Name)
		return s, true, nil
	}
	if !errors.Is(err, transport.ErrExists) {
		return Snapshot{}, false, fmt.Errorf("transform: save snapshot %s: %w", key, err)
	}
	other, err := st.get(ctx, key)
	if err != nil {
		return Snapshot{}, false, err
	}
	return other, other.sameContent(s), nil
}

// keepSnapshots is how many of a DET's newest snapshots the store keeps;
// older ones are removed when a newer one is saved, so that finding the
// newest costs the same whatever the DET's history.
const keepSnapshots = 3

// prune removes name's snapshots older than the newest keepSnapshots.
// Failures are left for the next save.
func (st *SnapshotStore) prune(ctx context.Context, name string) {
	keys, err := st.kv.Keys(ctx, name+".*")
	if err != nil || len(keys) <= keepSnapshots {
		return
	}
	slices.Sort(keys) // the keys hold zero-padded positions
	for _, k := range keys[:len(keys)-keepSnapshots] {
		_ = st.kv.Forget(ctx, k)
	}
}

func (st *SnapshotStore) get(ctx context.Context, key string) (Snapshot, error) {
	e, err := st.kv.Get(ctx, key)
	if err != nil {
		return Snapshot{}, fmt.Errorf("transform: read snapshot %s: %w", key, err)
	}
	var s Snapshot
	if err := json.Unmarshal(e.Value, &s); err != nil {
		return Snapshot{}, fmt.Errorf("%w: %s: %v", ErrSnapshotCorrupt, key, err)
	}
	return s, s.verify()
}

// Latest returns the newest snapshot of the DET named by spec, or ok false
// when there is none. A newest snapshot of another version is refused with
// [ErrSnapshotVersion]; one that does not verify with [ErrSnapshotCorrupt].
func (st *SnapshotStore) Latest(ctx context.Context, spec Spec) (s Snapshot, ok bool, err error) {
	keys, err := st.kv.Keys(ctx, spec.Name+".*")
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: list snapshots: %w", err)
	}
	var newest uint64
	var key string
	for _, k := range keys {
		seq, err := strconv.ParseUint(strings.TrimPrefix(k, spec.Name+"."), 10, 64)
		if err == nil && seq >= newest {
			newest, key = seq, k
		}
	}
	if key == "" {
		return Snapshot{}, false, nil
	}
	s, err = st.get(ctx, key)
	if err != nil {
		return Snapshot{}, false, err
	}
	if s.Version != spec.Version {
		return Snapshot{}, false, fmt.Errorf("%w: the newest snapshot of %q (input %d) is version %q, this is version %q; delete the snapshots to replay from the start",
			ErrSnapshotVersion, spec.Name, s.InputSeq, s.Version, spec.Version)
	}
	return s, true, nil
}
