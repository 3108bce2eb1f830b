package kv

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Reads answer from this Store's local state, as of the last event folded
// (see [Store.Applied]); they never wait for NATS. Call [Store.Wait] or
// [Store.Sync] first to read past a given write.

// Tables describes every declared table, [ConfigTable] included, sorted
// by name.
func (s *Store) Tables() []TableInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]TableInfo, 0, len(s.st.tables))
	for _, t := range s.st.tables {
		out = append(out, t.info())
	}
	slices.SortFunc(out, func(a, b TableInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Table describes one table, and false if it is not declared.
func (s *Store) Table(name string) (TableInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.st.tables[name]
	if t == nil {
		return TableInfo{}, false
	}
	return t.info(), true
}

// Keys returns, in increasing byte order, up to limit keys of table that
// hold a value (see [Value.Exists]) and sort after after ("" for the
// first page), and whether more follow. A limit <= 0 means no limit.
//
// Errors: ErrNoTable (wrapped).
func (s *Store) Keys(table, after string, limit int) (keys []string, more bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.st.tables[table]
	if t == nil {
		return nil, false, fmt.Errorf("%w: %q", ErrNoTable, table)
	}
	s.keysMu.Lock()
	sorted := t.sortedKeys()
	s.keysMu.Unlock()
	i := sort.SearchStrings(sorted, after)
	if i < len(sorted) && sorted[i] == after && after != "" {
		i++
	}
	keys = []string{}
	for ; i < len(sorted); i++ {
		if !t.keys[sorted[i]].exists {
			continue
		}
		if limit > 0 && len(keys) == limit {
			return keys, true, nil
		}
		keys = append(keys, sorted[i])
	}
	return keys, false, nil
}

// Get returns the state of key in table: what it means (Value, Exists)
// and the CRDT's whole state (Meta). A key that was written but holds no
// value now (deleted, every element removed) is returned with Exists
// false and Value null.
//
// Errors: ErrNoTable (wrapped) when the table is not declared, ErrNoKey
// when the key was never written.
func (s *Store) Get(table, key string) (Value, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.st.tables[table]
	if t == nil {
		return Value{}, fmt.Errorf("%w: %q", ErrNoTable, table)
	}
	e := t.keys[key]
	if e == nil {
		return Value{}, fmt.Errorf("%w: %q in table %q", ErrNoKey, key, table)
	}
	return t.value(key, e, true)
}

// Rejections returns the kept rejections of ops on table (the newest
// [MaxRejections] of a declared table, and those of the ops on it before
// it was declared that are among the newest MaxRejections of undeclared
// tables), or of every table for "", in log order.
func (s *Store) Rejections(table string) []Rejection {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Rejection
	for _, x := range s.st.other.List() {
		if table == "" || x.Table == table {
			out = append(out, x)
		}
	}
	for name, t := range s.st.tables {
		if table == "" || name == table {
			out = append(out, t.rej.List()...)
		}
	}
	slices.SortFunc(out, func(a, b Rejection) int { return cmp.Compare(a.Position.Seq, b.Position.Seq) })
	if out == nil {
		out = []Rejection{}
	}
	return out
}

// UndeclaredRejected counts the ops rejected because their table was not
// declared (or its name is not a valid table name); they are not counted
// in any [TableInfo].
func (s *Store) UndeclaredRejected() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.other.Count()
}

// Dump returns the whole state in a deterministic encoding (JSON, every
// list sorted), the one snapshots store: two replicas that folded the
// same events return the same bytes. It holds off the fold while it
// encodes. The second result is the stream sequence the state covers.
func (s *Store) Dump() ([]byte, uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	var buf bytes.Buffer
	if err := s.st.dump(&buf); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), s.st.applied, nil
}

// WatchBuffer is how many changes a watcher's channel holds. When it is
// full, later changes are dropped for that watcher until it has room, and
// the next change delivered counts them in Change.Dropped.
const WatchBuffer = 1024

// Watch returns a channel of the changes the fold makes to table ("" for
// every table, [ConfigTable] included) from now on: each op applied (with
// the key's new Value, without Meta) or rejected (with Rejected set). The
// fold never waits for a watcher: the channel holds [WatchBuffer]
// changes, and changes that find it full are dropped and counted in the
// next one delivered (Change.Dropped); re-read with Get after a drop.
// A change is handed to the watchers before [Store.Wait] for its position
// returns. The channel is closed when ctx is done or the store is closed.
func (s *Store) Watch(ctx context.Context, table string) <-chan Change {
	return s.watchers.Chan(ctx, table, WatchBuffer, func(c *Change, dropped uint64) { c.Dropped = dropped })
}
