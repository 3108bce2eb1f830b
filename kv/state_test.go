package kv

import (
	"bytes"
	"errors"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/transport"
)

// fakeLog hands events to a state the way the log would: each ESK's
// indices from 0, sequences increasing, times increasing.
type fakeLog struct {
	st     *state
	seq    uint64
	counts map[string]uint64
}

func newFakeLog() *fakeLog { return &fakeLog{st: newState(), counts: map[string]uint64{}} }

func (f *fakeLog) event(esk, payload, contentType string) event {
	f.seq++
	idx := f.counts[esk]
	f.counts[esk]++
	return event{pos: transport.Position{ESK: esk, Index: idx, Seq: f.seq},
		ts: hlc.Timestamp{WallTime: 1_700_000_000_000_000_000 + int64(f.seq)}, contentType: contentType, data: []byte(payload)}
}

// put folds one JSON op on table.
func (f *fakeLog) put(table, payload string) result {
	return f.st.apply(f.event(ESKPrefix+table, payload, ""))
}

// ok folds an op that must be applied.
func (f *fakeLog) ok(t *testing.T, table, payload string) {
	t.Helper()
	if r := f.put(table, payload); r.rejected != nil {
		t.Fatalf("%s %s rejected: %s", table, payload, r.rejected.Reason)
	}
}

// rejected folds an op that must be rejected with a reason containing
// want.
func (f *fakeLog) rejected(t *testing.T, table, payload, want string) {
	t.Helper()
	r := f.put(table, payload)
	if r.rejected == nil {
		t.Fatalf("%s %s applied, want a rejection containing %q", table, payload, want)
	}
	if !strings.Contains(r.rejected.Reason, want) {
		t.Fatalf("%s %s rejected with %q, want it to contain %q", table, payload, r.rejected.Reason, want)
	}
}

func (f *fakeLog) declare(t *testing.T, table string, typ Type) {
	t.Helper()
	f.ok(t, ConfigTable, `{"op":"set","key":"`+table+`","value":{"crdt":"`+string(typ)+`"}}`)
}

// get returns the JSON value of a key and whether it exists.
func (f *fakeLog) get(t *testing.T, table, key string) (string, bool) {
	t.Helper()
	tb := f.st.tables[table]
	if tb == nil {
		t.Fatalf("no table %q", table)
	}
	e := tb.keys[key]
	if e == nil {
		return "", false
	}
	v, err := tb.value(key, e, true)
	if err != nil {
		t.Fatal(err)
	}
	return string(v.Value), v.Exists
}

func (f *fakeLog) want(t *testing.T, table, key, want string) {
	t.Helper()
	got, exists := f.get(t, table, key)
	if got != want {
		t.Fatalf("%s/%s = %s (exists %v), want %s", table, key, got, exists, want)
	}
}

func TestFoldLWW(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "users", TypeLWW)
	f.ok(t, "users", `{"op":"set","key":"alice","value":{"age":3}}`)
	f.want(t, "users", "alice", `{"age":3}`)
	f.ok(t, "users", `{"op":"set","key":"alice","value": { "age" : 4 } }`)
	f.want(t, "users", "alice", `{"age":4}`)
	f.ok(t, "users", `{"op":"set","key":"bob","value":null}`)
	f.want(t, "users", "bob", `null`)
	if _, exists := f.get(t, "users", "bob"); !exists {
		t.Error("a key set to null should exist")
	}
	f.ok(t, "users", `{"op":"delete","key":"alice"}`)
	if v, exists := f.get(t, "users", "alice"); exists || v != "null" {
		t.Errorf("deleted key: %s, exists %v", v, exists)
	}
	if n := f.st.tables["users"].nexist; n != 1 {
		t.Errorf("%d keys exist, want 1", n)
	}
	f.rejected(t, "users", `{"op":"add","key":"alice","element":"x"}`, "add is not an op of an lww table")
	f.rejected(t, "users", `{"op":"set","key":"alice"}`, `needs a "value"`)
	f.rejected(t, "users", `{"op":"set","key":"alice","value":1,"field":"f"}`, `takes no "field"`)
	f.rejected(t, "users", `{"op":"set","key":"","value":1}`, "empty key")
	f.rejected(t, "users", `{"op":"set","key":"`+strings.Repeat("k", MaxKeyLength+1)+`","value":1}`, "the limit is 1024")
	f.rejected(t, "users", `{"op":"frob","key":"alice"}`, `unknown op "frob"`)
	if tb := f.st.tables["users"]; tb.ops != 4 || tb.rej.Count() != 6 {
		t.Errorf("ops %d, rejected %d; want 4 and 6", tb.ops, tb.rej.Count())
	}
}

func TestFoldMVReg(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "docs", TypeMVReg)
	f.ok(t, "docs", `{"op":"set","key":"d","value":"a"}`)              // kv.docs@0
	f.ok(t, "docs", `{"op":"set","key":"d","value":"b","context":[]}`) // concurrent with a
	f.want(t, "docs", "d", `["a","b"]`)
	f.ok(t, "docs", `{"op":"set","key":"d","value":"c","context":[{"esk":"kv.docs","index":0}]}`) // replaces a only
	f.want(t, "docs", "d", `["b","c"]`)
	f.ok(t, "docs", `{"op":"set","key":"d","value":"z"}`) // replaces all present
	f.want(t, "docs", "d", `["z"]`)
	f.rejected(t, "docs", `{"op":"delete","key":"d"}`, "delete is not an op of an mvreg table")
	f.rejected(t, "docs", `{"op":"set","key":"d","value":1,"context":[{"esk":"","index":0}]}`, `empty "esk"`)
}

func TestFoldORSet(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "tags", TypeORSet)
	f.ok(t, "tags", `{"op":"add","key":"k","element":"x"}`) // kv.tags@0
	f.ok(t, "tags", `{"op":"add","key":"k","element":"y"}`)
	f.want(t, "tags", "k", `["x","y"]`)
	f.ok(t, "tags", `{"op":"remove","key":"k","element":"y"}`) // every tag present
	f.want(t, "tags", "k", `["x"]`)
	f.ok(t, "tags", `{"op":"add","key":"k","element":"x"}`)                                             // kv.tags@3
	f.ok(t, "tags", `{"op":"remove","key":"k","element":"x","observed":[{"esk":"kv.tags","index":0}]}`) // not @3
	f.want(t, "tags", "k", `["x"]`)
	f.ok(t, "tags", `{"op":"remove","key":"k","element":"x","observed":[]}`)
	f.want(t, "tags", "k", `["x"]`)
	f.ok(t, "tags", `{"op":"remove","key":"k","element":"x"}`)
	if v, exists := f.get(t, "tags", "k"); exists || v != "null" {
		t.Errorf("emptied set: %s, exists %v", v, exists)
	}
	f.rejected(t, "tags", `{"op":"add","key":"k"}`, "empty element")
	f.rejected(t, "tags", `{"op":"set","key":"k","value":1}`, "set is not an op of an orset table")
	f.rejected(t, "tags", `{"op":"add","key":"k","element":"x","observed":[]}`, `add on an orset table takes no "observed"`)
}

func TestFoldCounter(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "hits", TypeCounter)
	f.ok(t, "hits", `{"op":"incr","key":"k"}`)
	f.ok(t, "hits", `{"op":"incr","key":"k","delta":5}`)
	f.ok(t, "hits", `{"op":"incr","key":"k","delta":-2,"writer":"w2"}`)
	f.want(t, "hits", "k", `4`)
	f.ok(t, "hits", `{"op":"incr","key":"k","delta":9223372036854775807}`)
	f.ok(t, "hits", `{"op":"incr","key":"k","delta":9223372036854775807}`)
	f.want(t, "hits", "k", `9223372036854775807`) // saturated
	f.rejected(t, "hits", `{"op":"incr","key":"k","delta":1.5}`, "fraction or exponent")
	f.rejected(t, "hits", `{"op":"incr","key":"k","delta":9223372036854775808}`, "out of the int64 range")
	f.rejected(t, "hits", `{"op":"incr","key":"k","delta":"1"}`, `want "delta", an integer`)
	f.rejected(t, "hits", `{"op":"incr","key":"k","delta":null}`, `want "delta", an integer`)
	f.rejected(t, "hits", `{"op":"set","key":"k","value":1}`, "set is not an op of a counter table")
}

func TestFoldMap(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "profiles", TypeMap)
	f.ok(t, "profiles", `{"op":"set","key":"alice","field":"name","value":"Alice"}`)
	f.ok(t, "profiles", `{"op":"incr","key":"alice","field":"visits","delta":2}`)
	f.ok(t, "profiles", `{"op":"incr","key":"alice","field":"visits"}`)
	f.want(t, "profiles", "alice", `{"name":"Alice","visits":3}`)
	f.ok(t, "profiles", `{"op":"remove","key":"alice","field":"name"}`)
	f.want(t, "profiles", "alice", `{"visits":3}`)
	f.ok(t, "profiles", `{"op":"remove","key":"alice","field":"visits","observed":[]}`)
	f.want(t, "profiles", "alice", `{"visits":3}`)
	f.ok(t, "profiles", `{"op":"remove","key":"alice","field":"visits"}`)
	f.want(t, "profiles", "alice", `null`)
	f.rejected(t, "profiles", `{"op":"set","key":"alice","value":1}`, "empty field")
	f.rejected(t, "profiles", `{"op":"add","key":"alice","field":"f"}`, "add is not an op of a map table")
}

func TestFoldConfig(t *testing.T) {
	f := newFakeLog()
	f.rejected(t, "users", `{"op":"set","key":"a","value":1}`, `table "users" is not declared`)
	f.declare(t, "users", TypeLWW)
	f.declare(t, "users", TypeLWW) // equal: accepted, a no-op
	f.rejected(t, ConfigTable, `{"op":"set","key":"users","value":{"crdt":"orset"}}`, `table "users" is declared lww (at kv._config@0, seq 2); a declaration as orset is refused`)
	f.rejected(t, ConfigTable, `{"op":"delete","key":"users"}`, "a declaration cannot be deleted")
	f.rejected(t, ConfigTable, `{"op":"set","key":"x","value":{"crdt":"tree"}}`, `unknown table type "tree"`)
	f.rejected(t, ConfigTable, `{"op":"set","key":"x","value":{"crdt":"lww","ttl":3}}`, `unknown field "ttl"`)
	f.rejected(t, ConfigTable, `{"op":"set","key":"x","value":"lww"}`, `must be an object`)
	f.rejected(t, ConfigTable, `{"op":"set","key":"x","value":{}}`, `lacks "crdt"`)
	f.rejected(t, ConfigTable, `{"op":"set","key":"a.b","value":{"crdt":"lww"}}`, "contains a dot")
	f.rejected(t, ConfigTable, `{"op":"set","key":"_config","value":{"crdt":"lww"}}`, "built in")
	f.rejected(t, ConfigTable, `{"op":"set","key":"a*","value":{"crdt":"lww"}}`, "invalid ESK")
	f.ok(t, "users", `{"op":"set","key":"a","value":1}`)
	f.want(t, ConfigTable, "users", `{"crdt":"lww"}`)
	if tb := f.st.tables["users"]; tb.typ != TypeLWW || tb.declared.Seq != 2 {
		t.Errorf("users: %s declared at %v", tb.typ, tb.declared)
	}
	if c := f.st.tables[ConfigTable]; c.ops != 2 || c.rej.Count() != 9 {
		t.Errorf("_config: ops %d, rejected %d; want 2 and 9", c.ops, c.rej.Count())
	}
	if f.st.other.Count() != 1 || f.st.other.List()[0].Table != "users" {
		t.Errorf("undeclared rejections: %+v", f.st.other)
	}
	// An op on an ESK below a table's is not a table.
	r := f.st.apply(f.event("kv.users.x", `{"op":"set","key":"a","value":1}`, ""))
	if r.rejected == nil || !strings.Contains(r.rejected.Reason, "contains a dot") {
		t.Errorf("kv.users.x: %+v", r.rejected)
	}
}

func TestFoldMalformedDoesNotBlock(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "users", TypeLWW)
	for _, bad := range []string{
		``, `{`, `nope`, `[]`, `{"op":"set","key":"a","value":}`, `{"op":"set","key":"a","value":1}x`,
		`{"op":"set","key":"a","value":1,"op":"set"}`, `{"op":"set","key":"a","value":1,"Key":"b"}`,
		"{\"op\":\"set\",\"key\":\"\xff\",\"value\":1}", `{"op":"set","key":"\ud800","value":1}`,
		`{"op":null,"key":"a"}`,
	} {
		if r := f.put("users", bad); r.rejected == nil {
			t.Errorf("%q applied", bad)
		}
		f.ok(t, "users", `{"op":"set","key":"a","value":"after"}`)
	}
	f.want(t, "users", "a", `"after"`)
	tb := f.st.tables["users"]
	if tb.rej.Count() != 11 || len(tb.rej.List()) != 11 {
		t.Errorf("rejected %d, kept %d; want 11", tb.rej.Count(), len(tb.rej.List()))
	}
	for range 2 * MaxRejections {
		f.put("users", "bad")
	}
	kept := tb.rej.List()
	if len(kept) != MaxRejections || tb.rej.Count() != 11+2*MaxRejections || kept[len(kept)-1].Position.Seq != f.seq {
		t.Errorf("kept %d of %d, newest at %d (want %d)", len(kept), tb.rej.Count(), kept[len(kept)-1].Position.Seq, f.seq)
	}
}

func TestFoldMsgpack(t *testing.T) {
	f := newFakeLog()
	f.declare(t, "users", TypeLWW)
	data, err := transport.Msgpack.Marshal(Op{Op: OpSet, Key: "alice", Value: []byte(`{"age":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.st.apply(f.event("kv.users", string(data), transport.ContentTypeMsgpack)); r.rejected != nil {
		t.Fatal(r.rejected.Reason)
	}
	f.want(t, "users", "alice", `{"age":3}`)
	// A native msgpack value, as another SDK would write it.
	native, err := transport.Msgpack.Marshal(map[string]any{"op": "set", "key": "bob", "value": map[string]any{"tags": []any{"a", 1, 2.5, true, nil}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.st.apply(f.event("kv.users", string(native), "application/msgpack; charset=binary")); r.rejected != nil {
		t.Fatal(r.rejected.Reason)
	}
	f.want(t, "users", "bob", `{"tags":["a",1,2.5,true,null]}`)
	if r := f.st.apply(f.event("kv.users", "\xc1", transport.ContentTypeMsgpack)); r.rejected == nil {
		t.Error("a reserved msgpack byte was applied")
	}
	if r := f.st.apply(f.event("kv.users", `{}`, "text/plain")); r.rejected == nil || !strings.Contains(r.rejected.Reason, "unknown content type") {
		t.Errorf("text/plain: %+v", r.rejected)
	}
}

// TestFoldDumpRoundTrip checks that a loaded dump is the same state: it
// dumps to the same bytes, and folding more ops into it gives what
// folding them into the original gives.
func TestFoldDumpRoundTrip(t *testing.T) {
	f := newFakeLog()
	randomOps(f, rand.New(rand.NewPCG(1, 2)), 2000)
	var a bytes.Buffer
	if err := f.st.dump(&a); err != nil {
		t.Fatal(err)
	}
	loaded, err := loadState(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := loaded.dump(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("a loaded dump dumps differently")
	}
	for name, tb := range f.st.tables {
		if lt := loaded.tables[name]; lt.nexist != tb.nexist {
			t.Errorf("table %s: %d keys exist after loading, %d before", name, lt.nexist, tb.nexist)
		}
	}
	g := &fakeLog{st: loaded, seq: f.seq, counts: maps.Clone(f.counts)}
	f2 := &fakeLog{st: f.st, seq: f.seq, counts: maps.Clone(f.counts)}
	randomOps(g, rand.New(rand.NewPCG(3, 4)), 500)
	randomOps(f2, rand.New(rand.NewPCG(3, 4)), 500)
	a.Reset()
	b.Reset()
	f2.st.dump(&a)
	g.st.dump(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("folding after a load differs from folding on")
	}
	if _, err := loadState(a.Bytes()[:a.Len()/2]); !errors.Is(err, errCorrupt) {
		t.Errorf("a truncated dump: %v", err)
	}
}

// TestFoldExists checks after every op that whether its key exists, and
// the table's count of keys that do, agree with the key's CRDT.
func TestFoldExists(t *testing.T) {
	f := newFakeLog()
	declareRandomTables(f)
	r := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		res := f.put(randomOp(r))
		tb := f.st.tables[res.table]
		e := tb.keys[res.key]
		if e == nil {
			continue
		}
		if e.exists != existsOf(e.c) {
			t.Fatalf("%s/%s: the fold says exists %v, the CRDT %v", res.table, res.key, e.exists, existsOf(e.c))
		}
		n := 0
		for _, e := range tb.keys {
			if existsOf(e.c) {
				n++
			}
		}
		if tb.nexist != n {
			t.Fatalf("table %s counts %d keys that exist, its CRDTs %d", res.table, tb.nexist, n)
		}
	}
}

// randomTables are the tables of randomOp, one of each type.
var randomTables = []struct {
	name string
	typ  Type
}{{"l", TypeLWW}, {"s", TypeORSet}, {"c", TypeCounter}, {"m", TypeMap}, {"v", TypeMVReg}}

// randomOps declares randomTables and folds n random ops on them.
func randomOps(f *fakeLog, r *rand.Rand, n int) {
	declareRandomTables(f)
	for range n {
		f.put(randomOp(r))
	}
}

func declareRandomTables(f *fakeLog) {
	for _, tb := range randomTables {
		f.put(ConfigTable, `{"op":"set","key":"`+tb.name+`","value":{"crdt":"`+string(tb.typ)+`"}}`)
	}
}

// randomOp returns a random op, valid or not, on one of randomTables.
func randomOp(r *rand.Rand) (table, payload string) {
	keys := []string{"a", "b", "c", "d"}
	tb := randomTables[r.IntN(len(randomTables))]
	k := keys[r.IntN(len(keys))]
	var op string
	switch x := r.IntN(10); {
	case x == 0:
		op = `{"op":"set","key":"` + k // malformed
	case x == 1:
		op = `{"op":"incr","key":"` + k + `"}` // wrong for most
	case tb.typ == TypeLWW && x < 5:
		op = `{"op":"delete","key":"` + k + `"}`
	case tb.typ == TypeLWW, tb.typ == TypeMVReg:
		op = `{"op":"set","key":"` + k + `","value":` + strconv.Itoa(r.IntN(100)) + `}`
	case tb.typ == TypeORSet && x < 5:
		op = `{"op":"remove","key":"` + k + `","element":"` + keys[r.IntN(4)] + `"}`
	case tb.typ == TypeORSet:
		op = `{"op":"add","key":"` + k + `","element":"` + keys[r.IntN(4)] + `"}`
	case tb.typ == TypeCounter:
		op = `{"op":"incr","key":"` + k + `","delta":` + strconv.Itoa(r.IntN(21)-10) + `}`
	case x < 4:
		op = `{"op":"remove","key":"` + k + `","field":"` + keys[r.IntN(4)] + `"}`
	case x < 7:
		op = `{"op":"incr","key":"` + k + `","field":"n` + keys[r.IntN(4)] + `"}`
	default:
		op = `{"op":"set","key":"` + k + `","field":"` + keys[r.IntN(4)] + `","value":` + strconv.Itoa(r.IntN(100)) + `}`
	}
	return tb.name, op
}
