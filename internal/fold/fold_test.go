package fold_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestFoldAppliesEachEventOnceInOrder: every event of the pattern is
// applied once, in the log's order, and nothing else; outcomes are kept
// for the newest KeepOutcomes; rejections are counted and the newest
// kept; Wait for the last event's position sees it all.
func TestFoldAppliesEachEventOnceInOrder(t *testing.T) {
	t.Parallel()
	url, l := node(t)
	const n, keep = 600, 100
	want := map[string]int64{}
	var last transport.Position
	var rejected []uint64
	err := testnats.Publish(ctxT(t), url, n, func(i int) (string, []byte) {
		esk := "t.k" + strconv.Itoa(i%3)
		if i%2 == 1 {
			return l.Subject("other"), []byte("not folded")
		}
		if i%50 == 0 {
			return l.Subject(esk), []byte("garbage")
		}
		want[esk] += int64(i)
		return l.Subject(esk), []byte(strconv.Itoa(i))
	})
	if err != nil {
		t.Fatal(err)
	}
	for ev, err := range l.Events(ctxT(t), []string{"t.>"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Data) == "garbage" {
			rejected = append(rejected, ev.Seq)
		}
		last = ev.Position()
	}
	c := newTally(1)
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{fold.LogSource(l, "t.>")}, KeepOutcomes: keep}, nil)
	if err := f.Wait(ctxT(t), 0, last.Seq); err != nil {
		t.Fatal(err)
	}
	c.check(t)
	if f.Applied(0) != last.Seq {
		t.Errorf("applied %d, want %d", f.Applied(0), last.Seq)
	}
	c.mu.RLock()
	if c.applied != n/2 {
		t.Errorf("applied %d events, want %d", c.applied, n/2)
	}
	for esk, sum := range want {
		if c.sums[esk] != sum {
			t.Errorf("%s: sum %d, want %d", esk, c.sums[esk], sum)
		}
	}
	if got := c.rejected.List(); c.rejected.Count() != uint64(len(rejected)) || fmt.Sprint(got) != fmt.Sprint(rejected[len(rejected)-keepRejected:]) {
		t.Errorf("rejected %d, kept %v; want %d, the newest of %v", c.rejected.Count(), got, len(rejected), rejected)
	}
	c.mu.RUnlock()
	if o, ok := f.Outcome(0, last.Seq); !ok || o != want[last.ESK] {
		t.Errorf("outcome of the last event: %d, %v; want %d", o, ok, want[last.ESK])
	}
	if o, ok := f.Outcome(0, rejected[len(rejected)-1]); !ok || o != -1 {
		t.Errorf("outcome of the last rejected event: %d, %v", o, ok)
	}
	if _, ok := f.Outcome(0, 1); ok {
		t.Error("the outcome of the first event is kept, beyond KeepOutcomes")
	}
	if _, ok := f.Outcome(0, last.Seq-1); ok {
		t.Error("an outcome is kept for an event of another ESK")
	}
}

// TestWaitAndSync: Wait returns once the position is applied, gives up
// with ctx, and returns ErrClosed at Close; Sync catches up with what
// the log held when it was called.
func TestWaitAndSync(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	c := newTally(1)
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{fold.LogSource(l, "t.>")}}, nil)
	if err := f.Wait(ctxT(t), 0, 0); err != nil {
		t.Fatalf("wait for nothing: %v", err)
	}
	if err := f.Sync(ctxT(t)); err != nil {
		t.Fatalf("sync on an empty log: %v", err)
	}
	// Many waits for positions to come, released as the fold reaches
	// each.
	const writes = 50
	var wg sync.WaitGroup
	errs := make(chan error, writes)
	for i := 1; i <= writes; i++ {
		wg.Go(func() {
			if err := f.Wait(ctxT(t), 0, uint64(i)); err != nil {
				errs <- err
				return
			}
			if got := f.Applied(0); got < uint64(i) {
				errs <- fmt.Errorf("wait for %d returned at %d", i, got)
			}
		})
	}
	testnats.WaitFor(t, 10*time.Second, "the waits to register", func() error {
		if n := f.Waiting(0); n != writes {
			return fmt.Errorf("%d waiting", n)
		}
		return nil
	})
	for i := range writes {
		write(t, l, "t.a", strconv.Itoa(i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.Waiting(0); n != 0 {
		t.Errorf("%d still waiting", n)
	}
	write(t, l, "t.b", "1")
	write(t, l, "x", "not folded")
	if err := f.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.mu.RLock()
	if c.sums["t.b"] != 1 || c.sums["t.a"] != writes*(writes-1)/2 {
		t.Errorf("after Sync: %v", c.sums)
	}
	c.mu.RUnlock()

	// A wait that gives up leaves nothing behind.
	short, cancel := context.WithTimeout(ctxT(t), 20*time.Millisecond)
	defer cancel()
	if err := f.Wait(short, 0, 1<<40); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait for a far position: %v", err)
	}
	if n := f.Waiting(0); n != 0 {
		t.Errorf("%d waiting after the wait gave up", n)
	}
	done := make(chan error, 1)
	go func() { done <- f.Wait(ctxT(t), 0, 1<<40) }()
	testnats.WaitFor(t, 10*time.Second, "the wait to register", func() error {
		if f.Waiting(0) == 0 {
			return errors.New("none")
		}
		return nil
	})
	f.Close()
	if err := <-done; !errors.Is(err, fold.ErrClosed) {
		t.Errorf("wait across Close: %v", err)
	}
	if err := f.Wait(ctxT(t), 0, 1<<40); !errors.Is(err, fold.ErrClosed) {
		t.Errorf("wait after Close: %v", err)
	}
	if err := f.Wait(ctxT(t), 0, 1); err != nil {
		t.Errorf("wait for an applied position after Close: %v", err)
	}
	c.check(t)
}

// TestReadFailuresResume: a source that fails is read again after the
// last event applied; nothing is lost or applied twice, and Err reports
// the failure until the fold moves on.
func TestReadFailuresResume(t *testing.T) {
	t.Parallel()
	_, l := node(t)
	var last transport.Position
	for i := range 20 {
		last = write(t, l, "t.a", strconv.Itoa(i))
	}
	src := &failing{Source: fold.LogSource(l, "t.>"), fails: 3}
	c := newTally(1)
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{src}}, nil)
	if err := f.Wait(ctxT(t), 0, last.Seq); err != nil {
		t.Fatal(err)
	}
	c.check(t)
	c.mu.RLock()
	if c.sums["t.a"] != 190 || c.applied != 20 {
		t.Errorf("sum %d of %d events, want 190 of 20", c.sums["t.a"], c.applied)
	}
	c.mu.RUnlock()
	src.mu.Lock()
	if fmt.Sprint(src.reads) != "[0 1 2 3]" {
		t.Errorf("reads started after %v, want [0 1 2 3]", src.reads)
	}
	src.mu.Unlock()
	if err := f.Err(); err != nil {
		t.Errorf("Err after catching up: %v", err)
	}
}

// TestSeveralSources: a fold of two logs (two streams, as a site's own
// log beside a copy of another site's) applies both, each in its order,
// with a cursor each.
func TestSeveralSources(t *testing.T) {
	t.Parallel()
	url := testnats.Node(t).ClientURL()
	la := testnats.Log(t, url, transport.Config{Stream: "SITE_A", Prefix: "a"})
	lb := testnats.Log(t, url, transport.Config{Stream: "SITE_B", Prefix: "b"})
	c := newTally(2)
	f := newFold(t, c, fold.Config[int64]{Sources: []fold.Source{fold.LogSource(la, "t.>"), fold.LogSource(lb, "t.>")}, KeepOutcomes: 10}, nil)
	var pa, pb transport.Position
	for i := range 30 {
		pa = write(t, la, "t.x", "1")
		if i%3 == 0 {
			pb = write(t, lb, "t.x", "10")
		}
	}
	if err := f.Wait(ctxT(t), 0, pa.Seq); err != nil {
		t.Fatal(err)
	}
	if err := f.Wait(ctxT(t), 1, pb.Seq); err != nil {
		t.Fatal(err)
	}
	if f.Applied(0) != 30 || f.Applied(1) != 10 {
		t.Errorf("cursors %d and %d, want 30 and 10", f.Applied(0), f.Applied(1))
	}
	if o, ok := f.Outcome(1, pb.Seq); !ok || o < 100 {
		t.Errorf("outcome of the last event of b: %d, %v", o, ok)
	}
	write(t, lb, "t.x", "100")
	if err := f.Sync(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.mu.RLock()
	if c.sums["t.x"] != 30+100+100 {
		t.Errorf("sum %d, want 230", c.sums["t.x"])
	}
	c.mu.RUnlock()
	c.check(t)
}

// TestConfigValidates: a config that cannot work is refused, naming
// every problem.
func TestConfigValidates(t *testing.T) {
	_, l := node(t)
	src := fold.LogSource(l, "t.>")
	var mu sync.RWMutex
	apply := func(int, *transport.Event) int { return 0 }
	for _, c := range []struct {
		name string
		cfg  fold.Config[int]
		want string
	}{
		{"no source", fold.Config[int]{Mu: &mu, Apply: apply}, "no source"},
		{"no lock", fold.Config[int]{Sources: []fold.Source{src}, Apply: apply}, "no lock"},
		{"no apply", fold.Config[int]{Sources: []fold.Source{src}, Mu: &mu}, "no Apply"},
		{"same source twice", fold.Config[int]{Sources: []fold.Source{src, src}, Mu: &mu, Apply: apply}, "two sources"},
		{"negative outcomes", fold.Config[int]{Sources: []fold.Source{src}, Mu: &mu, Apply: apply, KeepOutcomes: -1}, "negative"},
		{"encode without store", fold.Config[int]{Sources: []fold.Source{src}, Mu: &mu, Apply: apply, Encode: func() ([]byte, uint64, error) { return nil, 0, nil }}, "go together"},
	} {
		_, err := fold.New(c.cfg)
		if !errors.Is(err, fold.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig saying %q", c.name, err, c.want)
		}
	}
}
