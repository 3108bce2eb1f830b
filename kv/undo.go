package kv

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/detbus/detbus/internal/fold"
)

// undoRec is what applying one event changed, for undo to restore: a
// merge of several logs applies an event that arrives late by undoing
// the events after its place and applying them again.
type undoRec struct {
	noop    bool // a tick's: nothing to undo
	applied uint64
	table   *table // the table the event named, if declared then
	ops     uint64
	clamped uint64
	nexist  int
	rej     fold.RejectionsMark[Rejection]
	other   fold.RejectionsMark[Rejection]

	key      string // the key an update touched ("" for none)
	keyTable *table
	fresh    bool   // the update made the key
	prior    []byte // the key's CRDT before the update, when not fresh
	exists   bool

	declared string // the table a declaration made
}

// applyUndoable applies ev and returns what undo needs to take it back.
func (st *state) applyUndoable(ev event) (result, undoRec) {
	rec := undoRec{applied: st.applied, other: st.other.Mark()}
	if t := st.tables[tableOf(ev.pos.ESK)]; t != nil {
		rec.table, rec.ops, rec.clamped, rec.nexist, rec.rej = t, t.ops, t.clamped, t.nexist, t.rej.Mark()
	}
	st.rec = &rec
	r := st.apply(ev)
	st.rec = nil
	return r, rec
}

// recordUpdate notes, before update changes it, the key's CRDT in t.
func (st *state) recordUpdate(t *table, key string) {
	rec := st.rec
	if rec == nil {
		return
	}
	rec.key, rec.keyTable = key, t
	e := t.keys[key]
	if e == nil {
		rec.fresh = true
		return
	}
	rec.exists = e.exists
	b, err := json.Marshal(e.c)
	if err != nil {
		panic(fmt.Sprintf("kv: encode %s/%s: %v", t.name, key, err)) // the CRDTs encode their own state
	}
	rec.prior = b
}

// recordDeclare notes the table a declaration makes.
func (st *state) recordDeclare(name string) {
	if st.rec != nil {
		st.rec.declared = name
	}
}

// undo takes back the event rec was recorded for, which must be the last
// one applied and not taken back.
func (st *state) undo(rec undoRec) {
	if rec.noop {
		return
	}
	st.applied = rec.applied
	st.other.Reset(rec.other)
	if rec.declared != "" {
		delete(st.tables, rec.declared)
	}
	if t := rec.keyTable; t != nil {
		if rec.fresh {
			delete(t.keys, rec.key)
			if i := slices.Index(t.added, rec.key); i >= 0 {
				t.added = slices.Delete(t.added, i, i+1)
			} else if i, ok := slices.BinarySearch(t.sorted, rec.key); ok {
				t.sorted = slices.Delete(slices.Clone(t.sorted), i, i+1) // readers may hold the old slice
			}
		} else {
			c := newCRDT(t.typ)
			if err := json.Unmarshal(rec.prior, c); err != nil {
				panic(fmt.Sprintf("kv: decode %s/%s: %v", t.name, rec.key, err))
			}
			e := t.keys[rec.key]
			e.c, e.exists = c, rec.exists
		}
	}
	if t := rec.table; t != nil {
		t.ops, t.clamped, t.nexist = rec.ops, rec.clamped, rec.nexist
		t.rej.Reset(rec.rej)
	}
}
