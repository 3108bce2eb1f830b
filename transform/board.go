package transform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/detbus/detbus/transport"
)

// DefaultStatusBucket is the JetStream KV bucket where instances publish
// their [Status].
const DefaultStatusBucket = "detbus-status"

// StatusBoard is where running instances publish their status, one key per
// stream, DET, generation and instance ("<stream>.<name>.<instance>",
// "<stream>.<name>.g<N>.<instance>" for a later generation), so that
// `detbus status` can show every instance's progress, heartbeat and
// divergences. Entries expire after a day without updates.
type StatusBoard struct {
	kv *transport.Bucket
}

// OpenStatusBoard creates or binds the status bucket beside log.
func OpenStatusBoard(ctx context.Context, log *transport.Log) (*StatusBoard, error) {
	kv, err := log.Bucket(ctx, transport.BucketConfig{Name: DefaultStatusBucket, Description: "detbus transform instances", TTL: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("transform: status bucket: %w", err)
	}
	return &StatusBoard{kv: kv}, nil
}

// BindStatusBoard binds the status bucket if it exists; ok is false when
// no instance has published yet.
func BindStatusBoard(ctx context.Context, log *transport.Log) (b *StatusBoard, ok bool, err error) {
	kv, err := log.BindBucket(ctx, DefaultStatusBucket)
	if errors.Is(err, transport.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("transform: status bucket: %w", err)
	}
	return &StatusBoard{kv: kv}, true, nil
}

// Publish records s.
func (b *StatusBoard) Publish(ctx context.Context, s Status) error {
	s.Updated = time.Now().UTC()
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = b.kv.Put(ctx, s.Stream+"."+generationName(s.Name, s.Generation)+"."+s.Instance, body)
	return err
}

// List returns the statuses published for stream ("" for every stream),
// sorted by DET and instance.
func (b *StatusBoard) List(ctx context.Context, stream string) ([]Status, error) {
	keys, err := b.kv.Keys(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("transform: list status: %w", err)
	}
	var out []Status
	for _, k := range keys {
		e, err := b.kv.Get(ctx, k)
		if err != nil {
			continue // deleted or expired meanwhile
		}
		var s Status
		if err := json.Unmarshal(e.Value, &s); err == nil && (stream == "" || s.Stream == stream) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stream != out[j].Stream {
			return out[i].Stream < out[j].Stream
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		if out[i].Generation != out[j].Generation {
			return out[i].Generation < out[j].Generation
		}
		return out[i].Instance < out[j].Instance
	})
	return out, nil
}
