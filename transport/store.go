package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// State beside the log: the packages built on the log keep what is not an
// event (snapshots, status) in JetStream key/value and object store
// buckets, through these types, so that only this package speaks to NATS.

// ErrExists is wrapped when a key or object to create is there already.
var ErrExists = errors.New("transport: already exists")

// BucketConfig configures a key/value [Bucket].
type BucketConfig struct {
	Name        string        // letters, digits, '-' and '_'
	Description string        // shown by NATS tools
	TTL         time.Duration // how long a value lives after its last write (0: for ever)
	History     int           // values kept per key (default 1)
}

// Bucket is a JetStream key/value bucket beside the log. It is safe for
// concurrent use.
type Bucket struct {
	kv   jetstream.KeyValue
	name string
	l    *Log
}

// Entry is one value of a [Bucket].
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time
}

// Bucket binds the bucket, creating it with cfg (and as many replicas as
// the log's stream) when it does not exist. A bucket that exists is used
// as it is: creating and changing buckets is for admins (a node
// provisions the ones it uses at start), using them for every user with
// a grant.
//
// Errors: [ErrInvalidOption] for a bad name; [ErrUnavailable] or
// [ErrForbidden] (wrapped) when NATS refuses.
func (l *Log) Bucket(ctx context.Context, cfg BucketConfig) (*Bucket, error) {
	if !validBucketName(cfg.Name) {
		return nil, fmt.Errorf("%w: bucket name %q: use letters, digits, '-' and '_'", ErrInvalidOption, cfg.Name)
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	name := l.siteBucket(cfg.Name)
	ctx, release := l.denied.guard(ctx, "", "$JS.API.STREAM.INFO.KV_"+name)
	defer release()
	kv, err := l.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: cfg.Description, History: uint8(max(cfg.History, 1)),
			TTL: cfg.TTL, Storage: jetstream.FileStorage, Replicas: max(int(l.replicas.Load()), 1),
			Placement: l.placement(),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = l.js.KeyValue(ctx, name)
		}
	}
	if ferr := forbidden(ctx); ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, l.storeErr("bucket "+cfg.Name, err)
	}
	return &Bucket{kv: kv, name: name, l: l}, nil
}

// BindBucket binds a bucket that exists.
//
// Errors: [ErrNotFound] when there is no such bucket; as [Log.Bucket].
func (l *Log) BindBucket(ctx context.Context, name string) (*Bucket, error) {
	if !validBucketName(name) {
		return nil, fmt.Errorf("%w: bucket name %q: use letters, digits, '-' and '_'", ErrInvalidOption, name)
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	stored := l.siteBucket(name)
	ctx, release := l.denied.guard(ctx, "", "$JS.API.STREAM.INFO.KV_"+stored)
	defer release()
	kv, err := l.js.KeyValue(ctx, stored)
	if ferr := forbidden(ctx); ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, l.storeErr("bucket "+name, err)
	}
	return &Bucket{kv: kv, name: stored, l: l}, nil
}

// Name returns the bucket's name in JetStream (at a site, "<name>-<site>").
func (b *Bucket) Name() string { return b.name }

// Create stores value under key only if the key holds nothing, and
// returns its revision.
//
// Errors: [ErrExists] when the key holds a value; as [Log.Bucket].
func (b *Bucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Create(ctx, key, value)
	if err != nil {
		return 0, b.l.storeErr(b.name+" key "+key, err)
	}
	return rev, nil
}

// Put stores value under key and returns its revision.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	rev, err := b.kv.Put(ctx, key, value)
	if err != nil {
		return 0, b.l.storeErr(b.name+" key "+key, err)
	}
	return rev, nil
}

// Get returns the value of key.
//
// Errors: [ErrNotFound] when the key holds nothing.
func (b *Bucket) Get(ctx context.Context, key string) (Entry, error) {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, b.l.storeErr(b.name+" key "+key, err)
	}
	return Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// Delete removes key.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	if err := b.kv.Delete(ctx, key); err != nil {
		return b.l.storeErr(b.name+" key "+key, err)
	}
	return nil
}

// Forget removes key and every trace of it (its history and delete
// marker), so that a bucket whose keys come and go does not grow with
// them. It needs the right to purge the bucket's stream.
func (b *Bucket) Forget(ctx context.Context, key string) error {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	s, err := b.l.js.Stream(ctx, "KV_"+b.name)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSubject("$KV."+b.name+"."+key))
	}
	if err != nil {
		return b.l.storeErr(b.name+" key "+key, err)
	}
	return nil
}

// Keys lists the keys matching filter (NATS subject wildcards; "" for
// all) that hold a value, empty when there are none. It reads the last
// message of each key with direct gets, no consumer, so it needs only the
// right to read the bucket; it lists at most 1024 keys.
func (b *Bucket) Keys(ctx context.Context, filter string) ([]string, error) {
	ctx, cancel := b.l.withTimeout(ctx)
	defer cancel()
	if filter == "" {
		filter = ">"
	}
	prefix := "$KV." + b.name + "."
	msgs, err := b.l.lastPerSubject(ctx, "KV_"+b.name, prefix+filter)
	if err != nil {
		return nil, b.l.storeErr(b.name+" keys", err)
	}
	var out []string
	for _, m := range msgs {
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			continue
		}
		out = append(out, m.Subject[len(prefix):])
	}
	return out, nil
}

// lastPerSubject returns the last message of every subject of stream
// matching filter, with one batched direct get (at most 1024 subjects).
func (l *Log) lastPerSubject(ctx context.Context, stream, filter string) ([]storedMsg, error) {
	rep, err := l.directOn(ctx, stream, directGetRequest{MultiLast: []string{filter}, Batch: 1024})
	if err != nil {
		return nil, err
	}
	return rep.msgs, nil
}

// directOn is a direct get on another stream of the log's (a bucket's),
// asked again while nothing answers: a stream just created, or one whose
// leader is changing, has no replica serving direct gets for a moment.
func (l *Log) directOn(ctx context.Context, stream string, req directGetRequest) (directReply, error) {
	for backoff := 5 * time.Millisecond; ; backoff = min(2*backoff, 250*time.Millisecond) {
		rep, err := l.gets.doOn(ctx, "$JS.API.DIRECT.GET."+stream, req)
		if err == nil || !errors.Is(err, errNoResponders) {
			return rep, err
		}
		if serr := sleepCtx(ctx, backoff); serr != nil {
			return rep, err
		}
	}
}

// Objects is a JetStream object store bucket beside the log, for state
// larger than a message. It is safe for concurrent use.
type Objects struct {
	obs  jetstream.ObjectStore
	name string
	l    *Log
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Name     string
	Size     uint64
	Modified time.Time
	Metadata map[string]string
}

// Objects binds the object store bucket name, creating it (with as many
// replicas as the log's stream) when create is set.
//
// Errors: [ErrNotFound] when it does not exist and create is not set;
// [ErrInvalidOption] for a bad name; [ErrUnavailable] or [ErrForbidden]
// (wrapped) when NATS refuses.
func (l *Log) Objects(ctx context.Context, name, description string, create bool) (*Objects, error) {
	if !validBucketName(name) {
		return nil, fmt.Errorf("%w: bucket name %q: use letters, digits, '-' and '_'", ErrInvalidOption, name)
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	stored := l.siteBucket(name)
	ctx, release := l.denied.guard(ctx, "", "$JS.API.STREAM.INFO.OBJ_"+stored)
	defer release()
	obs, err := l.js.ObjectStore(ctx, stored)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		obs, err = l.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: stored, Description: description, Storage: jetstream.FileStorage,
			Replicas: max(int(l.replicas.Load()), 1), Placement: l.placement(),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			obs, err = l.js.ObjectStore(ctx, stored)
		}
	}
	if ferr := forbidden(ctx); ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, l.storeErr("object store "+name, err)
	}
	return &Objects{obs: obs, name: stored, l: l}, nil
}

// Put stores data as the object name with metadata, replacing any object
// of that name. Large objects are stored in chunks.
func (o *Objects) Put(ctx context.Context, name, description string, metadata map[string]string, data []byte) error {
	if _, err := o.obs.Put(ctx, jetstream.ObjectMeta{Name: name, Description: description, Metadata: metadata}, bytes.NewReader(data)); err != nil {
		return o.l.storeErr(o.name+" object "+name, err)
	}
	return nil
}

// Get returns the object name and its description. It reads the
// object's chunks with batched direct gets, no consumer, and checks them
// against the object's digest.
//
// Errors: [ErrNotFound] when there is no such object; [ErrUnavailable]
// when its chunks cannot be read whole.
func (o *Objects) Get(ctx context.Context, name string) ([]byte, ObjectInfo, error) {
	info, err := o.info(ctx, name)
	if err != nil {
		return nil, ObjectInfo{}, o.l.storeErr(o.name+" object "+name, err)
	}
	data := make([]byte, 0, info.Size)
	subject := "$O." + o.name + ".C." + info.NUID
	next := uint64(1)
	for got := uint32(0); got < info.Chunks; {
		rep, err := o.l.directOn(ctx, "OBJ_"+o.name,
			directGetRequest{Seq: next, NextFor: subject, Batch: int(info.Chunks - got), MaxBytes: 16 << 20})
		if err != nil {
			return nil, ObjectInfo{}, o.l.storeErr(o.name+" object "+name, err)
		}
		if len(rep.msgs) == 0 {
			return nil, ObjectInfo{}, fmt.Errorf("%w: %s object %s: %d of its %d chunks read", ErrUnavailable, o.name, name, got, info.Chunks)
		}
		for _, m := range rep.msgs {
			data = append(data, m.Data...)
			next = m.Seq + 1
			got++
		}
	}
	sum := sha256.Sum256(data)
	if want := "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:]); uint64(len(data)) != info.Size || info.Digest != want {
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s object %s: its chunks do not match its size and digest", ErrUnavailable, o.name, name)
	}
	return data, info.ObjectInfo, nil
}

// objectMeta is an object's description as the object store keeps it.
type objectMeta struct {
	ObjectInfo
	NUID    string `json:"nuid"`
	Chunks  uint32 `json:"chunks"`
	Digest  string `json:"digest"`
	Deleted bool   `json:"deleted"`
}

func (m *objectMeta) UnmarshalJSON(b []byte) error {
	var raw struct {
		Name     string            `json:"name"`
		Size     uint64            `json:"size"`
		Metadata map[string]string `json:"metadata"`
		NUID     string            `json:"nuid"`
		Chunks   uint32            `json:"chunks"`
		Digest   string            `json:"digest"`
		Deleted  bool              `json:"deleted"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = objectMeta{ObjectInfo: ObjectInfo{Name: raw.Name, Size: raw.Size, Metadata: raw.Metadata},
		NUID: raw.NUID, Chunks: raw.Chunks, Digest: raw.Digest, Deleted: raw.Deleted}
	return nil
}

// info reads the description of the object name.
func (o *Objects) info(ctx context.Context, name string) (objectMeta, error) {
	subject := "$O." + o.name + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
	rep, err := o.l.directOn(ctx, "OBJ_"+o.name, directGetRequest{LastFor: subject})
	if err != nil {
		return objectMeta{}, err
	}
	if rep.notFound || len(rep.msgs) == 0 {
		return objectMeta{}, jetstream.ErrObjectNotFound
	}
	return decodeObjectMeta(rep.msgs[0])
}

func decodeObjectMeta(m storedMsg) (objectMeta, error) {
	var meta objectMeta
	if err := json.Unmarshal(m.Data, &meta); err != nil {
		return objectMeta{}, fmt.Errorf("object description: %w", err)
	}
	if meta.Deleted {
		return objectMeta{}, jetstream.ErrObjectNotFound
	}
	meta.Modified = m.Time
	return meta, nil
}

// List describes every object (at most 1024), empty when there are none.
// It reads the descriptions with one batched direct get.
func (o *Objects) List(ctx context.Context) ([]ObjectInfo, error) {
	msgs, err := o.l.lastPerSubject(ctx, "OBJ_"+o.name, "$O."+o.name+".M.>")
	if err != nil {
		return nil, o.l.storeErr(o.name+" objects", err)
	}
	out := make([]ObjectInfo, 0, len(msgs))
	for _, m := range msgs {
		meta, err := decodeObjectMeta(m)
		if err != nil {
			continue // deleted, or not a description
		}
		out = append(out, meta.ObjectInfo)
	}
	return out, nil
}

// Delete removes the object name.
func (o *Objects) Delete(ctx context.Context, name string) error {
	if err := o.obs.Delete(ctx, name); err != nil {
		return o.l.storeErr(o.name+" object "+name, err)
	}
	return nil
}

// storeErr maps the errors of buckets and object stores to the package's.
func (l *Log) storeErr(what string, err error) error {
	var fe *ForbiddenError
	switch {
	case errors.As(err, &fe):
		return fmt.Errorf("%w: %s: %s", ErrForbidden, what, fe.Reason)
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrBucketNotFound),
		errors.Is(err, jetstream.ErrObjectNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%w: %s: %v", ErrNotFound, what, err)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%w: %s: %v", ErrExists, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

func validBucketName(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// LastSeq returns the stream sequence of the last event of the ESKs
// matching pattern (wildcards allowed), as the stream leader holds it; 0
// when there is none. A fold that has applied that sequence has applied
// every such event written before the call.
//
// Errors: [ErrInvalidESK], [ErrUnavailable].
func (l *Log) LastSeq(ctx context.Context, pattern string) (uint64, error) {
	if err := ValidateESKPattern(pattern); err != nil {
		return 0, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	m, found, err := l.leaderLast(ctx, l.Subject(pattern))
	if err != nil || !found {
		return 0, err
	}
	return m.Seq, nil
}
