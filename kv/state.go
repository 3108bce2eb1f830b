package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
)

// event is what the fold reads of a log event.
type event struct {
	pos         transport.Position
	ts          hlc.Timestamp
	clamped     bool // its HLC header was ignored (see transport.MaxEventSkew)
	contentType string
	data        []byte
}

func eventOf(ev *transport.Event) event {
	return event{pos: ev.Position(), ts: ev.Time, clamped: ev.Clamped, contentType: ev.ContentType(), data: ev.Data}
}

// state is the store's deterministic core: what the ops folded so far
// make of every table. It does no I/O. apply modifies it; reads may run
// concurrently while nothing applies, except sortedKeys and dump, which
// update the tables' sorted-key caches.
type state struct {
	applied uint64 // stream sequence of the last event folded
	tables  map[string]*table
	other   rejections // ops on tables that are not declared
	rec     *undoRec   // while applyUndoable applies an event
}

// table is one declared table.
type table struct {
	name     string
	typ      Type
	declared transport.Position
	ops      uint64
	clamped  uint64 // ops whose HLC time was too far from their stored time
	rej      rejections
	keys     map[string]*entry
	nexist   int // keys that exist

	// sorted holds the keys in order as of the last call of sortedKeys;
	// added, those created since.
	sorted []string
	added  []string
}

// entry is the CRDT of one key: a *crdt.LWW, *crdt.ORSet, *crdt.Counter,
// *crdt.Map or *crdt.MVReg as the table's type says.
type entry struct {
	key    string
	c      any
	exists bool
}

// intern returns key b as a string: the one t holds if t has the key.
func (t *table) intern(b []byte) string {
	if t != nil {
		if e := t.keys[string(b)]; e != nil {
			return e.key
		}
	}
	return string(b)
}

// rejections counts rejections and keeps the newest MaxRejections.
type rejections = fold.Rejections[Rejection]

func newState() *state {
	st := &state{tables: map[string]*table{}}
	st.tables[ConfigTable] = newTable(ConfigTable, TypeLWW, transport.Position{})
	return st
}

func newTable(name string, t Type, declared transport.Position) *table {
	return &table{name: name, typ: t, declared: declared, keys: map[string]*entry{}}
}

// result says what one event did.
type result struct {
	table, key string
	rejected   *Rejection
}

// maxRejectedData is how much of a rejected event's payload is kept.
const maxRejectedData = 1024

// apply folds one event. Every outcome depends only on the event and the
// state, so every replica folding the same events in the same order
// reaches the same state.
func (st *state) apply(ev event) result {
	st.applied = ev.pos.Seq
	name := tableOf(ev.pos.ESK)
	t := st.tables[name]
	res := result{table: name}
	reject := func(key string, err error) result {
		x := Rejection{Position: ev.pos, Table: name, Reason: err.Error(), Data: bytes.Clone(ev.data[:min(len(ev.data), maxRejectedData)])}
		if t != nil {
			t.rej.Add(x, MaxRejections)
		} else {
			st.other.Add(x, MaxRejections)
		}
		res.key, res.rejected = key, &x
		return res
	}
	if t == nil {
		if err := ValidateTable(name); err != nil {
			return reject("", err)
		}
	}
	op, err := decodeOpFor(ev.data, ev.contentType, t)
	if err != nil {
		return reject("", err)
	}
	res.key = op.Key
	if t == nil {
		return reject(op.Key, fmt.Errorf("%w: table %q is not declared (set %s/%s to {\"crdt\":\"<type>\"} first)", ErrNoTable, name, ConfigTable, name))
	}
	if err := CheckOp(t.typ, op); err != nil {
		return reject(op.Key, err)
	}
	if ev.clamped {
		t.clamped++
	}
	if t.name == ConfigTable {
		err = st.declare(t, op, ev)
	} else {
		st.recordUpdate(t, op.Key)
		err = t.update(op, ev)
	}
	if err != nil {
		return reject(op.Key, err)
	}
	return res
}

// update applies a checked op to its key in t.
func (t *table) update(op Op, ev event) error {
	e := t.keys[op.Key]
	fresh := e == nil
	if fresh {
		e = &entry{key: op.Key, c: newCRDT(t.typ)}
	}
	was := e.exists
	if err := e.apply(op, ev); err != nil {
		return err
	}
	t.countExists(was, e.exists)
	if fresh {
		t.keys[op.Key] = e
		t.added = append(t.added, op.Key)
	}
	t.ops++
	return nil
}

func newCRDT(t Type) any {
	switch t {
	case TypeLWW:
		return new(crdt.LWW)
	case TypeORSet:
		return new(crdt.ORSet)
	case TypeCounter:
		return new(crdt.Counter)
	case TypeMap:
		return new(crdt.Map)
	case TypeMVReg:
		return new(crdt.MVReg)
	}
	panic("kv: unknown table type " + string(t))
}

// apply applies a checked op to the key's CRDT and updates whether the
// key exists. An op that adds can only make the key exist; one that
// removes may leave it empty.
func (e *entry) apply(op Op, ev event) error {
	dot := crdt.Dot{ESK: ev.pos.ESK, Index: ev.pos.Index}
	switch c := e.c.(type) {
	case *crdt.LWW:
		if err := c.Apply(crdt.LWWOp{Dot: dot, TS: ev.ts, Delete: op.Op == OpDelete, Value: op.Value}); err != nil {
			return err
		}
		e.exists = existsOf(c)
	case *crdt.ORSet:
		so := crdt.ORSetOp{Dot: dot, TS: ev.ts, Remove: op.Op == OpRemove, Element: op.Element, Observed: op.Observed}
		if so.Remove && so.Observed == nil {
			so.Observed = c.Tags(op.Element)
		}
		if err := c.Apply(so); err != nil {
			return err
		}
		if so.Remove {
			e.exists = existsOf(c)
		} else {
			e.exists = e.exists || c.Contains(op.Element)
		}
	case *crdt.Counter:
		if err := c.Apply(crdt.CounterOp{Dot: dot, TS: ev.ts, Writer: writerOf(op, ev), Delta: deltaOf(op)}); err != nil {
			return err
		}
		e.exists = true
	case *crdt.Map:
		mo := crdt.MapOp{Key: op.Field, Dot: dot, TS: ev.ts}
		switch op.Op {
		case OpSet:
			mo.Kind, mo.Value = crdt.MapSet, op.Value
		case OpIncr:
			mo.Kind, mo.Writer, mo.Delta = crdt.MapAdd, writerOf(op, ev), deltaOf(op)
		case OpRemove:
			mo.Kind, mo.Observed = crdt.MapRemove, op.Observed
			if mo.Observed == nil {
				mo.Observed = c.Tags(op.Field)
			}
		}
		if err := c.Apply(mo); err != nil {
			return err
		}
		if mo.Kind == crdt.MapRemove {
			e.exists = existsOf(c)
		} else {
			_, ok := c.Get(op.Field)
			e.exists = e.exists || ok
		}
	case *crdt.MVReg:
		mo := crdt.MVRegOp{Dot: dot, TS: ev.ts, Value: op.Value, Context: op.Context}
		if mo.Context == nil {
			mo.Context = c.Context()
		}
		if err := c.Apply(mo); err != nil {
			return err
		}
		e.exists = existsOf(c)
	default:
		return fmt.Errorf("%w: a key of type %T", ErrTableType, c)
	}
	return nil
}

// existsOf reports whether a key's CRDT holds a value.
func existsOf(c any) bool {
	switch c := c.(type) {
	case *crdt.LWW:
		_, _, ok := c.Winner()
		return ok && !c.Deleted()
	case *crdt.ORSet:
		return c.Len() > 0
	case *crdt.Counter:
		return true // a counter key is created by its first op
	case *crdt.Map:
		return c.Len() > 0
	case *crdt.MVReg:
		return c.Len() > 0
	}
	return false
}

// countExists adjusts a table's count of existing keys after an op.
func (t *table) countExists(was, now bool) {
	switch {
	case now && !was:
		t.nexist++
	case was && !now:
		t.nexist--
	}
}

// writerOf is a counter op's writer: its "writer" field, else its ESK.
func writerOf(op Op, ev event) string {
	if op.Writer != "" {
		return op.Writer
	}
	return ev.pos.ESK
}

func deltaOf(op Op) int64 {
	if op.Delta == nil {
		return 1
	}
	return *op.Delta
}

// declare applies a checked op on the config table.
func (st *state) declare(cfg *table, op Op, ev event) error {
	if op.Op == OpDelete {
		t := st.tables[op.Key]
		if t == nil {
			return fmt.Errorf("%w: %s/%s: a declaration cannot be deleted, and table %q is not declared", ErrTableType, ConfigTable, op.Key, op.Key)
		}
		return fmt.Errorf("%w: %s/%s: a declaration cannot be deleted; table %q stays %s", ErrTableType, ConfigTable, op.Key, op.Key, t.typ)
	}
	if op.Key == ConfigTable {
		return fmt.Errorf("%w: %s is built in and cannot be declared", ErrInvalidOp, ConfigTable)
	}
	if err := ValidateTable(op.Key); err != nil {
		return err
	}
	typ, err := parseTableConfig(op.Value)
	if err != nil {
		return fmt.Errorf("%w: %s/%s: %w", ErrInvalidOp, ConfigTable, op.Key, err)
	}
	if t := st.tables[op.Key]; t != nil {
		if t.typ != typ {
			return fmt.Errorf("%w: table %q is declared %s (at %s@%d, seq %d); a declaration as %s is refused",
				ErrTableType, op.Key, t.typ, t.declared.ESK, t.declared.Index, t.declared.Seq, typ)
		}
		cfg.ops++ // an equal declaration: accepted, changes nothing
		return nil
	}
	st.recordUpdate(cfg, op.Key)
	if err := cfg.update(op, ev); err != nil {
		return err
	}
	st.tables[op.Key] = newTable(op.Key, typ, ev.pos)
	st.recordDeclare(op.Key)
	return nil
}

// parseTableConfig reads a declaration's value, {"crdt":"<type>"}.
func parseTableConfig(v json.RawMessage) (Type, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil || raw == nil {
		return "", errors.New(`the value must be an object {"crdt":"<type>"}`)
	}
	var typ string
	for k, f := range raw {
		if k != "crdt" {
			return "", fmt.Errorf("unknown field %q in a declaration (it has only \"crdt\")", truncate(k, 64))
		}
		if err := json.Unmarshal(f, &typ); err != nil {
			return "", errors.New(`"crdt" must be a string`)
		}
	}
	if _, ok := raw["crdt"]; !ok {
		return "", errors.New(`the declaration lacks "crdt"`)
	}
	t, err := ParseType(typ)
	if err != nil {
		return "", fmt.Errorf("unknown table type %q (want one of lww, orset, counter, map, mvreg)", truncate(typ, 64))
	}
	return t, nil
}

// sortedKeys returns every key of t in increasing byte order, existing or
// not. It merges the keys added since the last call into t.sorted.
func (t *table) sortedKeys() []string {
	if len(t.added) == 0 {
		return t.sorted
	}
	slices.Sort(t.added)
	merged := make([]string, 0, len(t.sorted)+len(t.added))
	i, j := 0, 0
	for i < len(t.sorted) && j < len(t.added) {
		if t.sorted[i] < t.added[j] {
			merged = append(merged, t.sorted[i])
			i++
		} else {
			merged = append(merged, t.added[j])
			j++
		}
	}
	merged = append(append(merged, t.sorted[i:]...), t.added[j:]...)
	t.sorted, t.added = merged, nil
	return merged
}

// info describes t.
func (t *table) info() TableInfo {
	return TableInfo{Name: t.name, Type: t.typ, Keys: t.nexist, Ops: t.ops, Rejected: t.rej.Count(), Clamped: t.clamped, Declared: t.declared}
}

// value builds the Value of a key, with its Meta when meta is set.
func (t *table) value(key string, e *entry, meta bool) (Value, error) {
	v := Value{Table: t.name, Key: key, Type: t.typ, Exists: e.exists}
	switch c := e.c.(type) {
	case *crdt.LWW:
		if x, ok := c.Value(); ok {
			v.Value = x
		}
	case *crdt.ORSet:
		b := []byte{'['}
		for i, el := range c.Value() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, el)
		}
		v.Value = append(b, ']')
	case *crdt.Counter:
		v.Value = strconv.AppendInt(nil, c.Value(), 10)
	case *crdt.Map:
		b := []byte{'{'}
		for i, f := range c.Value() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, f.Key), ':')
			if f.HasRegister {
				b = append(b, f.Register...)
			} else {
				b = strconv.AppendInt(b, f.Counter, 10)
			}
		}
		v.Value = append(b, '}')
	case *crdt.MVReg:
		b := []byte{'['}
		for i, x := range c.Value() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, x.Value...)
		}
		v.Value = append(b, ']')
	}
	if !e.exists {
		v.Value = json.RawMessage("null")
	}
	if meta {
		m, err := json.Marshal(e.c)
		if err != nil {
			return Value{}, fmt.Errorf("kv: encode %s/%s: %w", t.name, key, err)
		}
		v.Meta = m
	}
	return v, nil
}
