package transform

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/detbus/detbus/transport"
)

// DefaultSnapshotBucket is the JetStream KV bucket holding snapshots.
const DefaultSnapshotBucket = "detbus-snapshots"

// maxInlineState is the largest state stored inside its snapshot's
// bucket entry; a larger one goes to the object bucket
// ("<bucket>-states"), in chunks, without a limit of its own.
const maxInlineState = 256 << 10

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
	Output     string    `json:"output"`     // the DET's output ESK, where its claims are
	InputSeq   uint64    `json:"input_seq"`  // the last input applied
	Outputs    uint64    `json:"outputs"`    // outputs emitted so far
	Rejections uint64    `json:"rejections"` // inputs rejected so far
	Hash       string    `json:"hash"`       // sha256 of State, hex
	State      []byte    `json:"state"`
	Taken      time.Time `json:"taken"` // when (not part of the compared content)
	// Object names where State is kept when it is too large for the
	// bucket: an object of the store's object bucket, read back and
	// checked against Hash. Empty when State is inline.
	Object string `json:"object,omitempty"`
}

func newSnapshot(spec Spec, inputSeq, outputs, rejections uint64, state []byte) Snapshot {
	sum := sha256.Sum256(state)
	return Snapshot{Name: spec.Name, Version: spec.Version, Output: spec.Output, InputSeq: inputSeq, Outputs: outputs,
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

// Claim is what an instance appends to the log when it snapshots: the
// snapshot's content, without the state. Claims live in the DET's own
// namespace, "<output>.checkpoints.<input seq>", which only the DET's
// workers may write; a snapshot is a restore point only when the log
// holds a claim of it and no claim that contradicts it.
type Claim struct {
	By         string `json:"by"` // the instance
	Version    string `json:"version"`
	Outputs    uint64 `json:"outputs"`
	Rejections uint64 `json:"rejections"`
	Hash       string `json:"hash"`
}

// ClaimsESK is the ESK of the claims of the snapshots of a DET with
// output ESK output at input position inputSeq.
func ClaimsESK(output string, inputSeq uint64) string {
	return output + ".checkpoints." + strconv.FormatUint(inputSeq, 10)
}

func (s Snapshot) claim(by string) Claim {
	return Claim{By: by, Version: s.Version, Outputs: s.Outputs, Rejections: s.Rejections, Hash: s.Hash}
}

func (c Claim) agrees(s Snapshot) bool {
	return c.Version == s.Version && c.Outputs == s.Outputs && c.Rejections == s.Rejections && c.Hash == s.Hash
}

// SnapshotStore keeps DET snapshots in a JetStream KV bucket, one key per
// stream, DET and input position ("<stream>.<name>.<input seq>"), so that
// instances that snapshot the same position meet on the same key and can
// cross-check, and a DET run on another stream never takes them for its
// own. Beside each, the log holds the instances' claims of it (see
// [Claim]): the bucket's content is trusted only as far as the log
// confirms it.
type SnapshotStore struct {
	kv      *transport.Bucket
	log     *transport.Log
	stream  string
	objName string // the object bucket of large states

	objMu sync.Mutex
	obj   *transport.Objects // bound on first use
	// Logger receives the snapshots skipped as restore points (default
	// slog.Default()).
	Logger *slog.Logger
}

// OpenSnapshotStore binds the bucket beside log (creating it, with as
// many replicas as the log's stream, when the connection may).
func OpenSnapshotStore(ctx context.Context, log *transport.Log, bucket string) (*SnapshotStore, error) {
	if bucket == "" {
		bucket = DefaultSnapshotBucket
	}
	kv, err := log.Bucket(ctx, transport.BucketConfig{Name: bucket, Description: "detbus transform snapshots"})
	if err != nil {
		return nil, fmt.Errorf("transform: snapshot bucket %q: %w", bucket, err)
	}
	return &SnapshotStore{kv: kv, log: log, stream: log.Config().Stream, objName: bucket + "-states", Logger: slog.Default()}, nil
}

// objects binds the object bucket of large states, creating it if create.
func (st *SnapshotStore) objects(ctx context.Context, create bool) (*transport.Objects, error) {
	st.objMu.Lock()
	defer st.objMu.Unlock()
	if st.obj != nil {
		return st.obj, nil
	}
	o, err := st.log.Objects(ctx, st.objName, "detbus transform snapshot states too large for their bucket", create)
	if err != nil {
		return nil, fmt.Errorf("transform: snapshot states %q: %w", st.objName, err)
	}
	st.obj = o
	return o, nil
}

// encode returns the bucket entry of s, first storing a large state as an
// object named after the key and the state's hash.
func (st *SnapshotStore) encode(ctx context.Context, key string, s Snapshot) ([]byte, error) {
	if len(s.State) > maxInlineState {
		o, err := st.objects(ctx, true)
		if err != nil {
			return nil, err
		}
		s.Object = key + "." + s.Hash[:16]
		if err := o.Put(ctx, s.Object, "state of "+key, map[string]string{"hash": s.Hash}, s.State); err != nil {
			return nil, fmt.Errorf("transform: store snapshot state %s: %w", s.Object, err)
		}
		s.State = nil
	}
	return json.Marshal(s)
}

func (st *SnapshotStore) prefix(name string) string { return st.stream + "." + name + "." }

func (st *SnapshotStore) key(name string, seq uint64) string {
	return fmt.Sprintf("%s%020d", st.prefix(name), seq)
}

// Save claims s in the log for instance by, then stores it unless a
// snapshot of the same DET and position exists; then it compares the two
// and returns the stored one and whether they agree. They disagree only
// when the log holds a claim of another content at that position (an
// instance that computed another state): a stored snapshot the log does
// not confirm is replaced, with a warning. A claim the log refuses (the
// instance's user may not write the DET's checkpoints) is an error: the
// snapshot could never be restored.
func (st *SnapshotStore) Save(ctx context.Context, s Snapshot, by string) (stored Snapshot, agree bool, err error) {
	if s.Output == "" {
		return Snapshot{}, false, fmt.Errorf("transform: snapshot of %s has no output ESK", s.Name)
	}
	claim, _ := json.Marshal(s.claim(by))
	if _, err := st.log.Publish(ctx, ClaimsESK(s.Output, s.InputSeq), claim); err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: claim snapshot %s at input %d: %w", s.Name, s.InputSeq, err)
	}
	key := st.key(s.Name, s.InputSeq)
	body, err := st.encode(ctx, key, s)
	if err != nil {
		return Snapshot{}, false, err
	}
	_, err = st.kv.Create(ctx, key, body)
	if err == nil {
		st.prune(ctx, s.Name)
		return s, true, nil
	}
	if !errors.Is(err, transport.ErrExists) {
		return Snapshot{}, false, fmt.Errorf("transform: save snapshot %s: %w", key, err)
	}
	other, err := st.get(ctx, key)
	if err == nil && other.sameContent(s) {
		return other, true, nil
	}
	// Another snapshot holds the key. It contradicts this one only if the
	// log says so, with a claim of another content at this position;
	// otherwise it is no instance's (written by someone who may write the
	// bucket but not the DET's checkpoints, or damaged) and this one
	// replaces it.
	if cerr := st.confirmed(ctx, s); errors.Is(cerr, ErrSnapshotUnconfirmed) {
		return other, false, nil
	} else if cerr != nil {
		return Snapshot{}, false, cerr
	}
	st.Logger.Warn("replacing a snapshot the log does not confirm", "transform", s.Name, "key", key, "input_seq", s.InputSeq)
	if _, err := st.kv.Put(ctx, key, body); err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: save snapshot %s: %w", key, err)
	}
	return s, true, nil
}

// keepSnapshots is how many of a DET's newest snapshots the store keeps;
// older ones are removed when a newer one is saved, so that finding the
// newest costs the same whatever the DET's history.
const keepSnapshots = 3

// prune removes name's snapshots older than the newest keepSnapshots.
// Failures are left for the next save.
func (st *SnapshotStore) prune(ctx context.Context, name string) {
	keys, err := st.kv.Keys(ctx, st.prefix(name)+"*")
	if err != nil || len(keys) <= keepSnapshots {
		return
	}
	slices.Sort(keys) // the keys hold zero-padded positions
	for _, k := range keys[:len(keys)-keepSnapshots] {
		if e, err := st.kv.Get(ctx, k); err == nil {
			var s Snapshot
			if json.Unmarshal(e.Value, &s) == nil && s.Object != "" {
				if o, err := st.objects(ctx, false); err == nil {
					_ = o.Delete(ctx, s.Object)
				}
			}
		}
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
	if s.Object != "" {
		if len(s.State) > 0 {
			return Snapshot{}, fmt.Errorf("%w: %s has both an inline state and object %s", ErrSnapshotCorrupt, key, s.Object)
		}
		o, err := st.objects(ctx, false)
		if err != nil {
			return Snapshot{}, err
		}
		if s.State, _, err = o.Get(ctx, s.Object); err != nil {
			return Snapshot{}, fmt.Errorf("transform: read snapshot state %s: %w", s.Object, err)
		}
	}
	return s, s.verify()
}

// Latest returns the newest snapshot of the DET named by spec that is a
// restore point, or ok false when there is none: one that decodes and
// matches its hash, of spec's output, and that the log confirms, with at
// least one claim of it and no claim at its position that disagrees (see
// [Claim]). Snapshots that are not are logged and skipped, falling back
// to older ones. A newest snapshot of another version is refused with
// [ErrSnapshotVersion]: run the version that took it, or delete the
// snapshots to replay from the start.
func (st *SnapshotStore) Latest(ctx context.Context, spec Spec) (s Snapshot, ok bool, err error) {
	keys, err := st.kv.Keys(ctx, st.prefix(spec.Name)+"*")
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("transform: list snapshots: %w", err)
	}
	slices.Sort(keys)
	slices.Reverse(keys) // newest first
	for i, key := range keys {
		if _, err := strconv.ParseUint(strings.TrimPrefix(key, st.prefix(spec.Name)), 10, 64); err != nil {
			continue
		}
		s, err := st.get(ctx, key)
		if err == nil && i == 0 && s.Version != spec.Version {
			return Snapshot{}, false, fmt.Errorf("%w: the newest snapshot of %q (input %d) is version %q, this is version %q; delete the snapshots to replay from the start",
				ErrSnapshotVersion, spec.Name, s.InputSeq, s.Version, spec.Version)
		}
		if err == nil && (s.Name != spec.Name || s.Output != spec.Output || s.Version != spec.Version) {
			err = fmt.Errorf("%w: %s holds a snapshot of %s (output %s, version %q)", ErrSnapshotCorrupt, key, s.Name, s.Output, s.Version)
		}
		if err == nil {
			err = st.confirmed(ctx, s)
		}
		if err != nil {
			st.Logger.Warn("snapshot skipped", "transform", spec.Name, "key", key, "err", err)
			continue
		}
		return s, true, nil
	}
	return Snapshot{}, false, nil
}

// At returns the snapshot of the DET named by spec at input position
// seq, if it is a restore point (see [SnapshotStore.Latest]) whatever its
// version: where a new generation of the DET starts.
func (st *SnapshotStore) At(ctx context.Context, spec Spec, seq uint64) (Snapshot, error) {
	s, err := st.get(ctx, st.key(spec.Name, seq))
	if err == nil && (s.Name != spec.Name || s.Output != spec.Output || s.InputSeq != seq) {
		err = fmt.Errorf("%w: %s at input %d holds a snapshot of %s (output %s) at input %d", ErrSnapshotCorrupt, spec.Name, seq, s.Name, s.Output, s.InputSeq)
	}
	if err == nil {
		err = st.confirmed(ctx, s)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("no snapshot of %s at input %d to start from: %w", spec.Name, seq, err)
	}
	return s, nil
}

// ErrSnapshotUnconfirmed is wrapped when the log holds no claim of a
// snapshot, or a claim that contradicts it.
var ErrSnapshotUnconfirmed = errors.New("transform: snapshot not confirmed by the log")

// maxClaims bounds the claims of one position that a restore reads.
const maxClaims = 64

// confirmed checks s against its claims in the log.
func (st *SnapshotStore) confirmed(ctx context.Context, s Snapshot) error {
	claims, err := Claims(ctx, st.log, s.Output, s.InputSeq)
	if err != nil {
		return err
	}
	if len(claims) == 0 {
		return fmt.Errorf("%w: no claim of %s at input %d in %s", ErrSnapshotUnconfirmed, s.Name, s.InputSeq, ClaimsESK(s.Output, s.InputSeq))
	}
	for i, c := range claims {
		if !c.agrees(s) {
			return fmt.Errorf("%w: claim %d of %s at input %d (by %q) says hash %s, the snapshot %s", ErrSnapshotUnconfirmed, i, s.Name, s.InputSeq, c.By, c.Hash, s.Hash)
		}
	}
	return nil
}
