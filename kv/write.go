package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/detbus/detbus/transport"
)

// Do writes op to table and returns once this Store has folded it, with
// the position it landed at; reads on this Store then see it. The op is
// checked first (see [CheckOp]) against the table's type as this Store
// knows it, after catching up with the log (see [Store.Sync]) if the table
// is not known yet. It is written as JSON in one publish (stamped with the
// log's HLC time with Options.StampHLC); the fold applies it or rejects it
// the same way on every replica.
//
// Errors, nothing written: ErrInvalidOp or ErrTableType (wrapped) for an op
// that does not fit, ErrNoTable for a table not declared, ErrClosed.
// Errors after publishing: a rejection by the fold (wrapping ErrInvalidOp,
// ErrTableType or ErrNoTable, with the reason; the op is in the log and
// the position is returned), and ctx's error or transport.ErrUnavailable,
// after which the op may or may not have been written (the position's Seq
// is set when it was).
func (s *Store) Do(ctx context.Context, table string, op Op) (transport.Position, error) {
	if err := s.errClosed(); err != nil {
		return transport.Position{}, err
	}
	if err := s.check(ctx, table, op); err != nil {
		return transport.Position{}, err
	}
	payload, err := op.MarshalJSON()
	if err != nil {
		return transport.Position{}, err
	}
	return s.publish(ctx, table, payload)
}

// check checks op against table's type.
func (s *Store) check(ctx context.Context, table string, op Op) error {
	if err := ValidateTable(table); err != nil {
		return err
	}
	if table == ConfigTable {
		if err := CheckOp(TypeLWW, op); err != nil {
			return err
		}
		if op.Op == OpDelete {
			return fmt.Errorf("%w: a table's declaration cannot be deleted", ErrTableType)
		}
		if err := ValidateTable(op.Key); err != nil || op.Key == ConfigTable {
			return fmt.Errorf("%w: %q cannot be declared as a table", ErrInvalidOp, op.Key)
		}
		if _, err := parseTableConfig(op.Value); err != nil {
			return fmt.Errorf("%w: %s/%s: %w", ErrInvalidOp, ConfigTable, op.Key, err)
		}
		return nil
	}
	typ, ok := s.tableType(table)
	if !ok {
		if err := s.Sync(ctx); err != nil {
			return err
		}
		if typ, ok = s.tableType(table); !ok {
			return fmt.Errorf("%w: %q (declare it with CreateTable or %s/%s = {\"crdt\":\"<type>\"})", ErrNoTable, table, ConfigTable, table)
		}
	}
	if err := CheckOp(typ, op); err != nil {
		return fmt.Errorf("%s: %w", table, err)
	}
	return nil
}

func (s *Store) tableType(name string) (Type, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.st.tables[name]; t != nil {
		return t.typ, true
	}
	return "", false
}

// publish writes payload to the table's ESK and waits for the fold.
func (s *Store) publish(ctx context.Context, table string, payload []byte) (transport.Position, error) {
	esk := ESKPrefix + table
	var opts []transport.WriteOption
	if s.opts.StampHLC {
		opts = append(opts, transport.WithHLC())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.log.Config().Timeout)
		defer cancel()
	}
	pos, err := s.log.Publish(ctx, esk, payload, opts...)
	if err != nil {
		return transport.Position{}, err
	}
	if err := s.waitSeq(ctx, pos.Seq); err != nil {
		return pos, fmt.Errorf("kv: the op was written at seq %d but not yet folded: %w", pos.Seq, err)
	}
	return s.outcomeOf(ctx, pos)
}

// outcomeOf returns the position of the event written at pos (its index
// filled in), which the fold has folded, and its rejection if the fold
// rejected it.
func (s *Store) outcomeOf(ctx context.Context, pos transport.Position) (transport.Position, error) {
	if o, ok := s.f.Outcome(0, pos.Seq); ok {
		pos.Index = o.index
		return pos, o.err
	}
	return s.lookupOutcome(ctx, pos)
}

// lookupOutcome is outcomeOf for an event the fold went more than
// recentSize events past: it asks the log for its index.
func (s *Store) lookupOutcome(ctx context.Context, pos transport.Position) (transport.Position, error) {
	index, err := s.log.IndexOf(ctx, pos.ESK, pos.Seq)
	if err != nil {
		return pos, err
	}
	pos.Index = index
	return pos, s.rejectedAt(pos.ESK, pos.Seq)
}

// rejectedAt returns the rejection of the event at seq if it is still
// kept.
func (s *Store) rejectedAt(esk string, seq uint64) error {
	for _, r := range s.Rejections(esk[len(ESKPrefix):]) {
		if r.Position.Seq == seq {
			return rejectionError(&r)
		}
	}
	return nil
}

// CreateTable declares table name with CRDT type t: it sets
// _config/<name> to {"crdt":"<t>"}. Declaring a table again with the same
// type is accepted and changes nothing; with another type it is rejected
// (ErrTableType), the same way on every replica, since the first
// declaration in the log stays. Errors are those of [Store.Do].
func (s *Store) CreateTable(ctx context.Context, name string, t Type) (transport.Position, error) {
	if _, err := ParseType(string(t)); err != nil {
		return transport.Position{}, err
	}
	v, _ := json.Marshal(TableConfig{CRDT: t})
	return s.Do(ctx, ConfigTable, Op{Op: OpSet, Key: name, Value: v})
}

// Set sets key to value (encoded with encoding/json; pass a
// json.RawMessage for JSON text) in an lww or mvreg table. An mvreg set
// replaces every value present at its log position. Errors are those of
// [Store.Do].
func (s *Store) Set(ctx context.Context, table, key string, value any) (transport.Position, error) {
	v, err := marshalValue(value)
	if err != nil {
		return transport.Position{}, err
	}
	return s.Do(ctx, table, Op{Op: OpSet, Key: key, Value: v})
}

// Delete deletes key from an lww table (a tombstone that wins or loses by
// time like a set). Errors are those of [Store.Do].
func (s *Store) Delete(ctx context.Context, table, key string) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpDelete, Key: key})
}

// Add adds element to key's set in an orset table. Errors are those of
// [Store.Do].
func (s *Store) Add(ctx context.Context, table, key, element string) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpAdd, Key: key, Element: element})
}

// Remove removes element from key's set in an orset table: every add of
// it before the remove's log position; a later add brings it back.
// Errors are those of [Store.Do].
func (s *Store) Remove(ctx context.Context, table, key, element string) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpRemove, Key: key, Element: element})
}

// Incr adds delta (negative to decrement) to key's counter in a counter
// table. Errors are those of [Store.Do].
func (s *Store) Incr(ctx context.Context, table, key string, delta int64) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpIncr, Key: key, Delta: &delta})
}

// SetField sets field of key to value (as in [Store.Set]) in a map table.
// Errors are those of [Store.Do].
func (s *Store) SetField(ctx context.Context, table, key, field string, value any) (transport.Position, error) {
	v, err := marshalValue(value)
	if err != nil {
		return transport.Position{}, err
	}
	return s.Do(ctx, table, Op{Op: OpSet, Key: key, Field: field, Value: v})
}

// IncrField adds delta to the counter in field of key in a map table.
// Errors are those of [Store.Do].
func (s *Store) IncrField(ctx context.Context, table, key, field string, delta int64) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpIncr, Key: key, Field: field, Delta: &delta})
}

// RemoveField removes field from key in a map table: every update of it
// before the remove's log position; a later update brings it back.
// Errors are those of [Store.Do].
func (s *Store) RemoveField(ctx context.Context, table, key, field string) (transport.Position, error) {
	return s.Do(ctx, table, Op{Op: OpRemove, Key: key, Field: field})
}

func marshalValue(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w: the value is not valid JSON: %v", ErrInvalidOp, err)
		}
		return nil, fmt.Errorf("%w: the value does not encode as JSON: %v", ErrInvalidOp, err)
	}
	return b, nil
}
