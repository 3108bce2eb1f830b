package kvhttp_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/kv/kvhttp"
)

type sseEvent = apitest.SSE

// subscribe opens the events stream at path and delivers its events until
// the test ends.
func subscribe(t *testing.T, e *env, path string) <-chan sseEvent {
	t.Helper()
	return apitest.Subscribe(t, e.url, path)
}

// next returns the next event other than a keep-alive.
func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	return apitest.Next(t, events)
}

// TestEvents: the stream starts with "ready", then delivers an SDK write
// and an API write as changes, and a rejected op as a rejection, in log
// order, with keep-alive comments every 50ms in between (subscribe skips
// them: the test does not check that they come).
func TestEvents(t *testing.T) {
	e := newEnv(t, envConfig{opts: kvhttp.Options{Heartbeat: 50 * time.Millisecond}})
	e.createTable("users", kv.TypeLWW)
	events := subscribe(t, e, "/api/kv/events")
	if ev := next(t, events); ev.Name != "ready" || !strings.Contains(ev.Data, `"applied":`) {
		t.Fatalf("first event %+v, want ready", ev)
	}
	ctx := ctxT(t)
	pos, err := e.store.Set(ctx, "users", "alice", map[string]int{"age": 3})
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	var c struct {
		Table, Key string
		Position   struct{ ESK, Index, Seq any }
		Value      struct {
			Exists bool
			Value  json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
		t.Fatalf("change %q: %v", ev.Data, err)
	}
	if ev.Name != "change" || c.Table != "users" || c.Key != "alice" || !c.Value.Exists || string(c.Value.Value) != `{"age":3}` ||
		ev.ID != jsonNum(pos.Seq) {
		t.Fatalf("event %+v, want the change of users/alice at seq %d", ev, pos.Seq)
	}
	if strings.Contains(ev.Data, `"meta"`) {
		t.Errorf("a change carries a meta field: %s", ev.Data)
	}

	if _, err := e.log.Write(ctx, "kv.users", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Name != "rejection" || !strings.Contains(ev.Data, `"data":"not json"`) || !strings.Contains(ev.Data, `"reason":"`) {
		t.Fatalf("event %+v, want the rejection", ev)
	}
	e.do("POST", "/api/kv/tables/users/ops", `{"op":"delete","key":"alice"}`).Want(t, 200)
	if ev := next(t, events); ev.Name != "change" || !strings.Contains(ev.Data, `"exists":false`) {
		t.Fatalf("event %+v, want the delete", ev)
	}
}

// TestEventsOfOneTable: ?table= filters the stream.
func TestEventsOfOneTable(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createTable("users", kv.TypeLWW)
	e.createTable("hits", kv.TypeCounter)
	events := subscribe(t, e, "/api/kv/events?table=hits")
	if ev := next(t, events); ev.Name != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	ctx := ctxT(t)
	if _, err := e.store.Set(ctx, "users", "alice", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Incr(ctx, "hits", "home", 2); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Name != "change" || !strings.Contains(ev.Data, `"table":"hits"`) {
		t.Fatalf("event %+v, want only the change of hits", ev)
	}
}

func jsonNum(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestEventsEndWithTheStore: closing the store ends every event stream.
func TestEventsEndWithTheStore(t *testing.T) {
	e := newEnv(t, envConfig{})
	events := subscribe(t, e, "/api/kv/events")
	if ev := next(t, events); ev.Name != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event %+v after the store closed", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived the store")
	}
	e.do("POST", "/api/kv/tables", `{"name":"users","crdt":"lww"}`).Want(t, http.StatusServiceUnavailable)
}
