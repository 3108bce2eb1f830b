package transport_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// collect reads batches until the one holding seq last, checking each
// batch's size, and returns their events.
func collect(t *testing.T, l *transport.Log, patterns []string, opts transport.ReadOptions, last uint64, onBatch func([]transport.Event)) []transport.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []transport.Event
	for evs, err := range l.Batches(ctx, patterns, opts) {
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 || len(evs) > transport.MaxReadBatch {
			t.Fatalf("a batch of %d events", len(evs))
		}
		if onBatch != nil {
			onBatch(evs)
		}
		out = append(out, evs...)
		if evs[len(evs)-1].Seq >= last {
			break
		}
	}
	return out
}

// TestBatchesAreTheEvents: following in batches delivers what Events
// delivers, in the same order, with the same indices, times, headers
// and payloads, from the start and from a position within the log.
func TestBatchesAreTheEvents(t *testing.T) {
	t.Parallel()
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := ctxT(t)
	for i := range 300 {
		esk := []string{"shop.eu", "shop.us", "bank.x"}[i%3]
		var opts []transport.WriteOption
		if i%7 == 0 {
			opts = append(opts, transport.WithHLC(), transport.WithHeader("X-Test", strconv.Itoa(i)))
		}
		if _, err := l.Publish(ctx, esk, []byte(fmt.Sprintf(`{"i":%d}`, i)), opts...); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []uint64{0, 1, 2, 150, 299} {
		var want []transport.Event
		for ev, err := range l.Events(ctx, []string{"shop.*"}, transport.ReadOptions{From: from}) {
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, ev)
		}
		// Each read on a Log of its own: nothing learned from another.
		fresh := testnats.Log(t, l.Conn().ConnectedUrl(), transport.Config{})
		got := collect(t, fresh, []string{"shop.*"}, transport.ReadOptions{From: from, Follow: true}, want[len(want)-1].Seq, nil)
		if len(got) != len(want) {
			t.Fatalf("from %d: %d events in batches, %d from Events", from, len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Position() != w.Position() || g.Time != w.Time || !g.Stored.Equal(w.Stored) || g.Clamped != w.Clamped ||
				string(g.Data) != string(w.Data) || !reflect.DeepEqual(g.Header, w.Header) {
				t.Fatalf("from %d, event %d:\n got %+v\nwant %+v", from, i, g, w)
			}
		}
		// Without Follow, the batches end at the head.
		got = nil
		for evs, err := range fresh.Batches(ctx, []string{"shop.*"}, transport.ReadOptions{From: from}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, evs...)
		}
		if len(got) != len(want) || got[len(got)-1].Position() != want[len(want)-1].Position() {
			t.Fatalf("from %d without Follow: %d events, want %d", from, len(got), len(want))
		}
	}
	for _, err := range l.Batches(ctx, []string{"shop..x"}, transport.ReadOptions{Follow: true}) {
		if !errors.Is(err, transport.ErrInvalidESK) {
			t.Fatalf("a bad pattern: %v", err)
		}
	}
}

// TestBatchesHoldBackASlowReader: a reader slower than the log gets
// every event once, in order, in batches of at most MaxReadBatch, while
// the log is written; breaking out and reading again goes on where asked.
func TestBatchesHoldBackASlowReader(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	const n = 3 * transport.MaxReadBatch
	done := make(chan error, 1)
	go func() {
		done <- testnats.Publish(ctxT(t), url, n, func(i int) (string, []byte) {
			return l.Subject("slow.k" + strconv.Itoa(i%5)), []byte(strconv.Itoa(i))
		})
	}()
	next := uint64(1)
	indices := map[string]uint64{}
	got := collect(t, l, []string{"slow.>"}, transport.ReadOptions{Follow: true}, n, func(evs []transport.Event) {
		time.Sleep(5 * time.Millisecond) // the log runs ahead
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, ev := range got {
		if ev.Seq != next || ev.Index != indices[ev.ESK] || string(ev.Data) != strconv.Itoa(int(ev.Seq-1)) {
			t.Fatalf("event %+v, want seq %d, index %d", ev.Position(), next, indices[ev.ESK])
		}
		next++
		indices[ev.ESK]++
	}
	if next != n+1 {
		t.Fatalf("read up to %d of %d", next-1, n)
	}
	// Again from a position: the ESKs' first events there are looked up.
	again := collect(t, l, []string{"slow.>"}, transport.ReadOptions{From: n - 10, Follow: true}, n, nil)
	if len(again) != 11 || again[0].Seq != n-10 || again[0].Index != got[n-11].Index {
		t.Fatalf("from %d: %d events, the first %+v", n-10, len(again), again[0].Position())
	}
}

// TestBatchesFailWhenTheConnectionCloses: a lost connection ends the
// batches with ErrUnavailable, so that a fold reads again.
func TestBatchesFailWhenTheConnectionCloses(t *testing.T) {
	t.Parallel()
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	if _, err := l.Publish(ctxT(t), "c.a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for evs, err := range l.Batches(ctx, []string{"c.>"}, transport.ReadOptions{Follow: true}) {
		if err != nil {
			if !errors.Is(err, transport.ErrUnavailable) {
				t.Fatalf("after the connection closed: %v", err)
			}
			return
		}
		if len(evs) > 0 {
			l.Conn().Close()
		}
	}
	t.Fatal("the batches ended without an error")
}

// TestBatchesCostNoGoroutineEach: following costs the same goroutines
// after many small batches as after a few.
func TestBatchesCostNoGoroutineEach(t *testing.T) {
	t.Parallel()
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	const n = 300
	go func() {
		for i := range n {
			if _, err := l.Publish(context.Background(), "g.a", []byte(strconv.Itoa(i))); err != nil {
				return
			}
		}
	}()
	batches, early := 0, 0
	collect(t, l, []string{"g.>"}, transport.ReadOptions{Follow: true}, n, func([]transport.Event) {
		if batches++; batches == 10 {
			early = runtime.NumGoroutine()
		}
	})
	if batches < 50 {
		t.Skipf("only %d batches: the reader kept up too rarely to tell", batches)
	}
	if late := runtime.NumGoroutine(); late > early+batches/2 {
		t.Fatalf("%d goroutines after %d batches, %d after 10", late, batches, early)
	}
}
