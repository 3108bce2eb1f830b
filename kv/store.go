package kv

import (
	"context"
	"log/slog"
	"time"

	"github.com/detbus/detbus/transport"
)

// Options configures a [Store]. The zero value means every default.
type Options struct {
	// Replica names this replica: the name of its snapshot object
	// (default "<host>-<pid>").
	Replica string
	// SnapshotEvery is the number of folded ops between snapshots
	// (0: DefaultSnapshotEvery; < 0: never snapshot).
	SnapshotEvery int
	// SnapshotInterval snapshots at least this often while ops arrive
	// (0: DefaultSnapshotInterval; < 0: only by count).
	SnapshotInterval time.Duration
	// Snapshots is the JetStream object store bucket holding snapshots
	// (default DefaultSnapshotBucket).
	Snapshots string
	// NoRestore folds the log from its start, ignoring snapshots.
	NoRestore bool
	// Logger receives the store's warnings (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of [Options].
const (
	DefaultSnapshotEvery    = 10000
	DefaultSnapshotInterval = time.Minute
	DefaultSnapshotBucket   = "detbus-kv-snapshots"
)

// Store is a replica of the key/value store.
type Store struct {
	log *transport.Log
}

// Open opens a store on log.
func Open(ctx context.Context, log *transport.Log, opts Options) (*Store, error) {
	return &Store{log: log}, nil
}

// Close stops the store.
func (s *Store) Close() error { return nil }

// CreateTable declares a table.
func (s *Store) CreateTable(ctx context.Context, name string, t Type) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Do writes op to table.
func (s *Store) Do(ctx context.Context, table string, op Op) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Set sets key.
func (s *Store) Set(ctx context.Context, table, key string, value any) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Delete deletes key.
func (s *Store) Delete(ctx context.Context, table, key string) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Add adds element to key's set.
func (s *Store) Add(ctx context.Context, table, key, element string) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Remove removes element from key's set.
func (s *Store) Remove(ctx context.Context, table, key, element string) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Incr adds delta to key's counter.
func (s *Store) Incr(ctx context.Context, table, key string, delta int64) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// SetField sets a map field.
func (s *Store) SetField(ctx context.Context, table, key, field string, value any) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// IncrField adds delta to a map field's counter.
func (s *Store) IncrField(ctx context.Context, table, key, field string, delta int64) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// RemoveField removes a map field.
func (s *Store) RemoveField(ctx context.Context, table, key, field string) (transport.Position, error) {
	return transport.Position{}, ErrClosed
}

// Wait returns once pos is folded.
func (s *Store) Wait(ctx context.Context, pos transport.Position) error { return ErrClosed }

// Applied is the stream sequence folded so far.
func (s *Store) Applied() uint64 { return 0 }

// Tables lists the tables.
func (s *Store) Tables() []TableInfo { return nil }

// Table describes one table.
func (s *Store) Table(name string) (TableInfo, bool) { return TableInfo{}, false }

// Keys lists keys.
func (s *Store) Keys(table, after string, limit int) ([]string, bool, error) {
	return nil, false, ErrNoTable
}

// Get reads a key.
func (s *Store) Get(table, key string) (Value, error) { return Value{}, ErrNoTable }

// Rejections lists rejections.
func (s *Store) Rejections(table string) []Rejection { return nil }

// Watch delivers changes.
func (s *Store) Watch(ctx context.Context, table string) <-chan Change {
	ch := make(chan Change)
	close(ch)
	return ch
}
