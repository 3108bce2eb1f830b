package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestWriteGetCount(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	for i := range 5 {
		pos, err := l.Write(ctx, "orders.eu", []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		if pos.Index != uint64(i) || pos.ESK != "orders.eu" {
			t.Fatalf("write %d landed at %+v", i, pos)
		}
		if _, err := l.Write(ctx, "orders.us", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := l.Count(ctx, "orders.eu")
	if err != nil || n != 5 {
		t.Fatalf("count = %d, %v; want 5", n, err)
	}
	ev, err := l.Get(ctx, "orders.eu", 3)
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Data) != `{"n":3}` || ev.Index != 3 || ev.ESK != "orders.eu" || ev.Time.IsZero() {
		t.Fatalf("get 3 = %+v", ev)
	}
	if _, err := l.Get(ctx, "orders.eu", 5); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("get past the end: %v, want ErrNotFound", err)
	}
	// A second Log learns indices from scratch.
	l2 := testnats.Log(t, s.ClientURL(), transport.Config{})
	ev2, err := l2.Get(ctx, "orders.eu", 4)
	if err != nil || string(ev2.Data) != `{"n":4}` {
		t.Fatalf("fresh log get 4 = %+v, %v", ev2, err)
	}
}

func TestExistsOrWriteOutcomes(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	r, err := l.ExistsOrWrite(ctx, "acct.1", 0, []byte(`{"a":1}`))
	if err != nil || r.Outcome != transport.Written || r.Index != 0 || !r.Equal {
		t.Fatalf("first append: %+v, %v", r, err)
	}
	r, err = l.ExistsOrWrite(ctx, "acct.1", 0, []byte(`{"a":1}`))
	if err != nil || r.Outcome != transport.Present || !r.Equal {
		t.Fatalf("same event again: %+v, %v", r, err)
	}
	r, err = l.ExistsOrWrite(ctx, "acct.1", 0, []byte(`{"a":2}`))
	if err != nil || r.Outcome != transport.Present || r.Equal {
		t.Fatalf("other event at 0: %+v, %v", r, err)
	}
	_, err = l.ExistsOrWrite(ctx, "acct.1", 5, []byte(`{}`))
	var ahead *transport.IndexAheadError
	if !errors.As(err, &ahead) || ahead.Count != 1 || !errors.Is(err, transport.ErrIndexAhead) {
		t.Fatalf("index ahead: %v", err)
	}
	// A write through another Log moves the count; this Log's view is stale
	// and must be corrected, not trusted.
	other := testnats.Log(t, s.ClientURL(), transport.Config{})
	if _, err := other.Write(ctx, "acct.1", []byte(`{"b":1}`)); err != nil {
		t.Fatal(err)
	}
	r, err = l.ExistsOrWrite(ctx, "acct.1", 1, []byte(`{"b":2}`))
	if err != nil || r.Outcome != transport.Present || r.Equal {
		t.Fatalf("stale view at 1: %+v, %v", r, err)
	}
	r, err = l.ExistsOrWrite(ctx, "acct.1", 2, []byte(`{"c":1}`))
	if err != nil || r.Outcome != transport.Written || r.Index != 2 {
		t.Fatalf("append at 2: %+v, %v", r, err)
	}
	if n, _ := l.Count(ctx, "acct.1"); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
}

func TestBadInput(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{MaxPayload: 1024})
	ctx := ctxT(t)
	long := bytes.Repeat([]byte("a"), transport.MaxESKLength+1)
	for _, esk := range []string{"", "a..b", ".a", "a.", "a b", "a\tb", "a.*", "a.>", "a*b", string(long), "ü"} {
		if _, err := l.Write(ctx, esk, []byte(`{}`)); !errors.Is(err, transport.ErrInvalidESK) {
			t.Errorf("Write(%q): %v, want ErrInvalidESK", esk, err)
		}
		if _, err := l.ExistsOrWrite(ctx, esk, 0, []byte(`{}`)); !errors.Is(err, transport.ErrInvalidESK) {
			t.Errorf("ExistsOrWrite(%q): %v, want ErrInvalidESK", esk, err)
		}
	}
	big := bytes.Repeat([]byte("x"), 1025)
	if _, err := l.Write(ctx, "big", big); !errors.Is(err, transport.ErrPayloadTooLarge) {
		t.Errorf("oversized write: %v", err)
	}
	if _, err := l.ExistsOrWrite(ctx, "big", 0, big); !errors.Is(err, transport.ErrPayloadTooLarge) {
		t.Errorf("oversized existsOrWrite: %v", err)
	}
	if _, err := l.ExistsOrWrite(ctx, "ahead", 1, []byte(`{}`)); !errors.Is(err, transport.ErrIndexAhead) {
		t.Errorf("index ahead: %v", err)
	}
	st, err := l.State(ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 0 {
		t.Fatalf("bad input stored %d events: %v", st.Messages, st.ESKs)
	}
}

func TestServerDown(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{Timeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	if _, err := l.Write(ctx, "x", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	ctx = context.Background() // the Log's own 500ms default deadline applies
	if _, err := l.Write(ctx, "x", []byte(`{}`)); !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("write with server down: %v, want ErrUnavailable", err)
	}
	if _, err := l.ExistsOrWrite(ctx, "x", 1, []byte(`{}`)); !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("existsOrWrite with server down: %v, want ErrUnavailable", err)
	}
	if _, err := l.Count(ctx, "x"); !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("count with server down: %v, want ErrUnavailable", err)
	}
}

func TestWriteHeaders(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	if _, err := l.Write(ctx, "h.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(ctx, "h.a", []byte{0x81}, transport.WithHLC(), transport.WithContentType("application/msgpack"), transport.WithHeader("X-K", "v")); err != nil {
		t.Fatal(err)
	}
	plain, err := l.Get(ctx, "h.a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Header != nil || plain.Time.Compare(hlc.FromTime(plain.Stored)) != 0 || plain.Stored.IsZero() {
		t.Fatalf("plain write: header %v, time %v, stored %v", plain.Header, plain.Time, plain.Stored)
	}
	stamped, err := l.Get(ctx, "h.a", 1)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := hlc.Parse(stamped.Header.Get(transport.HeaderHLC))
	if err != nil || ts != stamped.Time || !plain.Time.Less(ts) {
		t.Fatalf("stamped write: %v %v (plain %v): %v", stamped.Header, stamped.Time, plain.Time, err)
	}
	if stamped.ContentType() != "application/msgpack" || stamped.Header.Get("X-K") != "v" {
		t.Fatalf("headers lost: %v", stamped.Header)
	}
	var v struct{ A int }
	if err := stamped.Decode(&v); !errors.Is(err, transport.ErrMalformed) {
		t.Fatalf("decoding a truncated msgpack payload: %v", err)
	}
}

// TestWriteAsyncInterleaved: two logs pipeline writes into one ESK at the
// same time, so runs of one writer are interleaved with the other's. Every
// position reported must be the event's true index.
func TestWriteAsyncInterleaved(t *testing.T) {
	s := testnats.Node(t)
	ctx := ctxT(t)
	const perWriter = 2000
	logs := []*transport.Log{testnats.Log(t, s.ClientURL(), transport.Config{}), testnats.Log(t, s.ClientURL(), transport.Config{})}
	results := make([][]*transport.PendingWrite, len(logs))
	var wg sync.WaitGroup
	for w, l := range logs {
		wg.Go(func() {
			for i := range perWriter {
				p, err := l.WriteAsync(ctx, "il.k", []byte(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], p)
				if i%100 == 0 { // a synchronous write now and then, mixed in
					if _, err := l.Write(ctx, "il.k", []byte(fmt.Sprintf(`{"w":%d,"sync":%d}`, w, i))); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	reader := testnats.Log(t, s.ClientURL(), transport.Config{})
	seen := map[uint64]bool{}
	for w, ps := range results {
		for i, p := range ps {
			pos, err := p.Result()
			if err != nil {
				t.Fatal(err)
			}
			if seen[pos.Index] {
				t.Fatalf("index %d reported twice", pos.Index)
			}
			seen[pos.Index] = true
			ev, err := reader.Get(ctx, "il.k", pos.Index)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i); string(ev.Data) != want || ev.Seq != pos.Seq {
				t.Fatalf("writer %d event %d reported at %+v, but index %d holds %s (seq %d)", w, i, pos, pos.Index, ev.Data, ev.Seq)
			}
		}
	}
	if n, _ := reader.Count(ctx, "il.k"); n != 2*perWriter+2*perWriter/100 {
		t.Fatalf("count %d", n)
	}
}
