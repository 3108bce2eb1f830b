package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStoreOps(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	for name, typ := range map[string]Type{"users": TypeLWW, "tags": TypeORSet, "hits": TypeCounter, "profiles": TypeMap, "docs": TypeMVReg} {
		must(t)(s.CreateTable(ctx, name, typ))
	}

	must(t)(s.Set(ctx, "users", "alice", map[string]int{"age": 3}))
	must(t)(s.Set(ctx, "users", "bob", json.RawMessage(`"b"`)))
	p := must(t)(s.Delete(ctx, "users", "bob"))
	if p.ESK != "kv.users" || p.Index != 2 || p.Seq == 0 {
		t.Errorf("delete landed at %+v, want kv.users index 2", p)
	}
	must(t)(s.Add(ctx, "tags", "k", "x"))
	must(t)(s.Add(ctx, "tags", "k", "y"))
	must(t)(s.Remove(ctx, "tags", "k", "x"))
	must(t)(s.Incr(ctx, "hits", "home", 5))
	must(t)(s.Incr(ctx, "hits", "home", -2))
	must(t)(s.SetField(ctx, "profiles", "alice", "name", "Alice"))
	must(t)(s.IncrField(ctx, "profiles", "alice", "visits", 2))
	must(t)(s.SetField(ctx, "profiles", "alice", "gone", true))
	must(t)(s.RemoveField(ctx, "profiles", "alice", "gone"))
	must(t)(s.Set(ctx, "docs", "d", []int{1}))
	must(t)(s.Do(ctx, "docs", Op{Op: OpSet, Key: "d", Value: []byte(`2`), Context: []crdt.Dot{}}))

	for _, tc := range []struct{ table, key, want string }{
		{"users", "alice", `{"age":3}`},
		{"users", "bob", `null`},
		{"tags", "k", `["y"]`},
		{"hits", "home", `3`},
		{"profiles", "alice", `{"name":"Alice","visits":2}`},
		{"docs", "d", `[[1],2]`},
		{ConfigTable, "hits", `{"crdt":"counter"}`},
	} {
		if got := getValue(t, s, tc.table, tc.key); got != tc.want {
			t.Errorf("%s/%s = %s, want %s", tc.table, tc.key, got, tc.want)
		}
	}
	v, err := s.Get("users", "alice")
	if err != nil || !v.Exists || v.Type != TypeLWW || !strings.Contains(string(v.Meta), `"dot":{"esk":"kv.users","index":0}`) {
		t.Errorf("users/alice: %+v, %v", v, err)
	}
	if v, _ := s.Get("users", "bob"); v.Exists || !strings.Contains(string(v.Meta), `"deleted":true`) {
		t.Errorf("users/bob: %+v", v)
	}

	// Errors from the client-side check: nothing is written.
	before := s.Applied()
	_, err = s.Incr(ctx, "users", "alice", 1)
	expectErr(t, err, ErrTableType)
	_, err = s.Set(ctx, "nope", "k", 1)
	expectErr(t, err, ErrNoTable)
	_, err = s.Set(ctx, "users", "", 1)
	expectErr(t, err, ErrInvalidOp)
	_, err = s.Set(ctx, "users", "k", func() {})
	expectErr(t, err, ErrInvalidOp)
	_, err = s.CreateTable(ctx, "a.b", TypeLWW)
	expectErr(t, err, ErrInvalidOp)
	_, err = s.CreateTable(ctx, "x", Type("tree"))
	expectErr(t, err, ErrInvalidOp)
	if s.Applied() != before {
		t.Error("a refused write was written")
	}
	_, err = s.Get("nope", "k")
	expectErr(t, err, ErrNoTable)
	_, err = s.Get("users", "carol")
	expectErr(t, err, ErrNoKey)

	// Tables and keys.
	info, ok := s.Table("users")
	if !ok || info.Type != TypeLWW || info.Keys != 1 || info.Ops != 3 || info.Declared.ESK != "kv._config" {
		t.Errorf("users: %+v", info)
	}
	var names []string
	for _, ti := range s.Tables() {
		names = append(names, ti.Name)
	}
	if want := []string{"_config", "docs", "hits", "profiles", "tags", "users"}; !reflect.DeepEqual(names, want) {
		t.Errorf("tables %v, want %v", names, want)
	}
	_, _, err = s.Keys("nope", "", 0)
	expectErr(t, err, ErrNoTable)
}

func TestStoreKeysPaging(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	must(t)(s.CreateTable(ctx, "t", TypeLWW))
	for i := range 25 {
		must(t)(s.Set(ctx, "t", fmt.Sprintf("k%02d", i), i))
	}
	must(t)(s.Delete(ctx, "t", "k03"))
	var all []string
	after := ""
	for {
		keys, more, err := s.Keys("t", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, keys...)
		if !more {
			break
		}
		after = keys[len(keys)-1]
	}
	if len(all) != 24 || all[0] != "k00" || all[3] != "k04" || all[23] != "k24" {
		t.Errorf("paged keys: %v", all)
	}
	keys, more, _ := s.Keys("t", "", 0)
	if len(keys) != 24 || more {
		t.Errorf("unlimited: %d keys, more %v", len(keys), more)
	}
	keys, more, _ = s.Keys("t", "k23", 1)
	if !reflect.DeepEqual(keys, []string{"k24"}) || more {
		t.Errorf("after k23: %v, more %v", keys, more)
	}
}

func TestStoreConfig(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	// An op before the declaration is rejected, even with the
	// declaration right behind it.
	early, err := l.Write(ctx, "kv.users", []byte(`{"op":"set","key":"a","value":1}`))
	if err != nil {
		t.Fatal(err)
	}
	decl := must(t)(s.CreateTable(ctx, "users", TypeLWW))
	must(t)(s.CreateTable(ctx, "users", TypeLWW)) // equal: a no-op
	_, err = s.CreateTable(ctx, "users", TypeCounter)
	expectErr(t, err, ErrTableType)
	if !strings.Contains(err.Error(), `table "users" is declared lww`) {
		t.Errorf("conflict error: %v", err)
	}
	// The same conflict written by another tool.
	if _, err := l.Write(ctx, "kv._config", []byte(`{"op":"set","key":"users","value":{"crdt":"orset"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	info, _ := s.Table("users")
	if info.Type != TypeLWW || info.Declared != decl {
		t.Errorf("users after conflicts: %+v", info)
	}
	cfg, _ := s.Table(ConfigTable)
	if cfg.Ops != 2 || cfg.Rejected != 2 {
		t.Errorf("_config: %+v", cfg)
	}
	rej := s.Rejections(ConfigTable)
	if len(rej) != 2 || !strings.Contains(rej[1].Reason, "a declaration as orset is refused") {
		t.Errorf("_config rejections: %+v", rej)
	}
	rej = s.Rejections("users")
	if len(rej) != 1 || rej[0].Position != early || !strings.Contains(rej[0].Reason, `table "users" is not declared`) {
		t.Errorf("users rejections: %+v", rej)
	}
	if n := s.UndeclaredRejected(); n != 1 {
		t.Errorf("%d undeclared rejections, want 1", n)
	}
	if all := s.Rejections(""); len(all) != 3 || all[0].Position != early {
		t.Errorf("all rejections: %+v", all)
	}
	if _, err := s.Get("users", "a"); !errors.Is(err, ErrNoKey) {
		t.Errorf("the early op was applied: %v", err)
	}
}

func TestStoreMalformedDoesNotBlock(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	bad := []string{`{`, `not json`, `{"op":"incr","key":"a"}`, `{"op":"set","key":"a"}`, `{"op":"set","key":"a","value":1,"extra":1}`, "\xff"}
	for i, b := range bad {
		if _, err := l.Write(ctx, "kv.users", []byte(b)); err != nil {
			t.Fatal(err)
		}
		must(t)(s.Set(ctx, "users", "a", i))
	}
	if got := getValue(t, s, "users", "a"); got != fmt.Sprint(len(bad)-1) {
		t.Errorf("users/a = %s", got)
	}
	info, _ := s.Table("users")
	if info.Rejected != uint64(len(bad)) || info.Ops != uint64(len(bad)) {
		t.Errorf("users: %+v", info)
	}
}

func TestStoreMsgpack(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	data, err := transport.Msgpack.Marshal(map[string]any{"op": "set", "key": "carol", "value": map[string]any{"age": 7}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.Write(ctx, "kv.users", data, transport.WithContentType(transport.ContentTypeMsgpack))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got := getValue(t, s, "users", "carol"); got != `{"age":7}` {
		t.Errorf("users/carol = %s", got)
	}
}

// TestStoreReplicasAgree runs two stores over one log, writing through both
// at once, and checks that they hold the same state.
func TestStoreReplicasAgree(t *testing.T) {
	t.Parallel()
	srv, l1 := node(t)
	l2 := testnats.Log(t, srv.ClientURL(), transport.Config{})
	a, b := open(t, l1, Options{}), open(t, l2, Options{})
	ctx := testCtx(t)
	must(t)(a.CreateTable(ctx, "t", TypeLWW))
	must(t)(b.CreateTable(ctx, "s", TypeORSet))
	must(t)(b.CreateTable(ctx, "c", TypeMap))
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b} {
		wg.Go(func() {
			for i := range 60 {
				k := fmt.Sprintf("k%d", i%7)
				var err error
				switch i % 5 {
				case 0:
					_, err = s.Set(ctx, "t", k, fmt.Sprintf("w%d-%d", w, i))
				case 1:
					_, err = s.Add(ctx, "s", k, fmt.Sprint(i%3))
				case 2:
					_, err = s.Remove(ctx, "s", k, fmt.Sprint(i%3))
				case 3:
					_, err = s.IncrField(ctx, "c", k, "n", int64(i))
				case 4:
					_, err = l1.Write(ctx, "kv.t", []byte(`{"op":"garbage"}`))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, s := range []*Store{a, b} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	da, db := dump(t, a), dump(t, b)
	if da != db {
		t.Fatalf("replicas differ:\n%s\n%s", da, db)
	}
	if a.Applied() != b.Applied() || a.Applied() == 0 {
		t.Errorf("applied %d and %d", a.Applied(), b.Applied())
	}
}

func TestStoreWait(t *testing.T) {
	t.Parallel()
	srv, l1 := node(t)
	l2 := testnats.Log(t, srv.ClientURL(), transport.Config{})
	a, b := open(t, l1, Options{}), open(t, l2, Options{})
	ctx := testCtx(t)
	must(t)(a.CreateTable(ctx, "t", TypeCounter))
	for i := range 20 {
		p := must(t)(a.Incr(ctx, "t", "k", 1))
		if err := b.Wait(ctx, p); err != nil {
			t.Fatal(err)
		}
		// Read-your-writes on both: a's write has waited, b has waited.
		for _, s := range []*Store{a, b} {
			if got := getValue(t, s, "t", "k"); got != fmt.Sprint(i+1) {
				t.Fatalf("after write %d: %s", i+1, got)
			}
		}
	}
	// Sync catches up with the last kv op, whatever follows it in the log.
	last := must(t)(a.Incr(ctx, "t", "k", 1))
	if _, err := l1.Write(ctx, "orders.eu", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil || b.Applied() != last.Seq {
		t.Fatalf("sync: %v, applied %d, want %d", err, b.Applied(), last.Seq)
	}
	// The outcome of a write the fold has long passed is found in the log.
	o, err := a.lookupOutcome(ctx, transport.Position{ESK: last.ESK, Seq: last.Seq})
	if err != nil || o != last {
		t.Fatalf("outcome of %+v: %+v, %v", last, o, err)
	}
	err = b.Wait(ctx, transport.Position{ESK: "orders", Seq: 1})
	expectErr(t, err, ErrInvalidOp)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Wait(short, transport.Position{ESK: "kv.t", Seq: 1 << 40}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a future seq: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx, transport.Position{ESK: "kv.t", Seq: 1 << 40}) }()
	testnats.WaitFor(t, 10*time.Second, "the waiter to register", func() error {
		if b.f.Waiting(0) == 0 {
			return errors.New("no waiter")
		}
		return nil
	})
	b.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Wait across Close: %v", err)
	}
	_, err = b.Set(ctx, "t", "k", 1)
	expectErr(t, err, ErrClosed)
}

func TestStoreWatch(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	s := open(t, l, Options{})
	ctx := testCtx(t)
	wctx, stop := context.WithCancel(ctx)
	all := s.Watch(wctx, "")
	users := s.Watch(wctx, "users")
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	p := must(t)(s.Set(ctx, "users", "alice", 3))
	if _, err := l.Write(ctx, "kv.users", []byte(`{"op":"bad","key":"a"}`)); err != nil {
		t.Fatal(err)
	}

	next := func(ch <-chan Change) Change {
		t.Helper()
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			return c
		case <-ctx.Done():
			t.Fatal("no change")
		}
		return Change{}
	}
	if c := next(all); c.Table != ConfigTable || c.Key != "users" || string(c.Value.Value) != `{"crdt":"lww"}` {
		t.Errorf("first change: %+v", c)
	}
	c := next(users)
	if c.Table != "users" || c.Key != "alice" || c.Position != p || string(c.Value.Value) != "3" || !c.Value.Exists || c.Rejected != nil {
		t.Errorf("users change: %+v", c)
	}
	if c := next(users); c.Rejected == nil || !strings.Contains(c.Rejected.Reason, `unknown op "bad"`) {
		t.Errorf("rejected change: %+v", c)
	}
	stop()
	for range all {
	}
	for range users {
	}

	// A watcher that does not read does not hold up the fold; it is told
	// how many changes it missed.
	slow := s.Watch(ctx, "users")
	var last transport.Position
	for i := range WatchBuffer + 10 {
		pw, err := l.WriteAsync(ctx, "kv.users", fmt.Appendf(nil, `{"op":"set","key":"k%d","value":1}`, i))
		if err != nil {
			t.Fatal(err)
		}
		if i == WatchBuffer+9 {
			if last, err = pw.Result(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Wait(ctx, last); err != nil {
		t.Fatal(err)
	}
	for range WatchBuffer {
		next(slow)
	}
	must(t)(s.Set(ctx, "users", "after", 1))
	if c := next(slow); c.Key != "after" || c.Dropped != 10 {
		t.Errorf("after a full buffer: key %q, dropped %d; want \"after\", 10", c.Key, c.Dropped)
	}
	s.Close()
	select {
	case c, ok := <-slow:
		if ok {
			t.Errorf("a change after the last: %+v", c)
		}
	case <-ctx.Done():
		t.Error("a watch stayed open after Close")
	}
	if _, ok := <-s.Watch(ctx, ""); ok {
		t.Error("Watch on a closed store gave a change")
	}
}

// TestRefusedWriteSaysNothingWritten: a write the stream refuses outright
// (here: the stream is full) is reported as refused, with nothing written,
// not as one that may have been written.
func TestRefusedWriteSaysNothingWritten(t *testing.T) {
	t.Parallel()
	srv, l := node(t)
	ctx := testCtx(t)
	s := open(t, l, Options{})
	must(t)(s.CreateTable(ctx, "users", TypeLWW))
	js, err := jetstream.New(testnats.Conn(t, srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, transport.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs = int64(st.CachedInfo().State.Msgs)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	_, err = s.Set(ctx, "users", "alice", 1)
	if err == nil || !strings.Contains(err.Error(), "nothing written") || strings.Contains(err.Error(), "may have been") {
		t.Fatalf("a refused write: %v", err)
	}
}

// TestStoreCloseLogsNothing: closing a store, even while its reader is
// still starting, is not a failure to read the log and logs nothing.
func TestStoreCloseLogsNothing(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	ctx := testCtx(t)
	var logs testnats.SyncBuffer
	for range 20 {
		s, err := Open(ctx, l, Options{SnapshotEvery: -1, SnapshotInterval: -1, Logger: newTestLogger(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if logs.Len() != 0 {
		t.Fatalf("closing stores logged:\n%s", logs.String())
	}
}
