package transport_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// The long log the scale tests and benchmarks share: built once per test
// binary (2,000,000 events, half of them on one ESK, or
// DETBUS_SCALE_EVENTS), removed at exit by TestMain.
var long struct {
	once sync.Once
	ll   *testnats.LongLog
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if long.ll != nil {
		long.ll.Close()
	}
	os.Exit(code)
}

func longLog(tb testing.TB) *testnats.LongLog {
	tb.Helper()
	if testnats.Race {
		tb.Skip("builds a log of millions of events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		tb.Skip("builds a log of millions of events")
	}
	long.once.Do(func() {
		dir, err := os.MkdirTemp("", "detbus-long-")
		if err != nil {
			long.err = err
			return
		}
		start := time.Now()
		long.ll, long.err = testnats.BuildLongLog(dir, testnats.ScaleEvents())
		if long.err == nil {
			fmt.Fprintf(os.Stderr, "long log: %d events (%d on %s) built in %v\n", long.ll.Total, long.ll.BigCount, long.ll.Big, time.Since(start).Round(time.Millisecond))
		}
	})
	if long.err != nil {
		tb.Fatalf("long log: %v", long.err)
	}
	return long.ll
}

// seqOfBig and seqOfOther give where the long log put an event: the ESK
// Big holds every even position and ESK scale.o<j> every thousandth odd
// one, so the index of every event is known without reading the log.
func seqOfBig(i uint64) uint64 { return 2*i + 1 }

func seqOfOther(j, i uint64) uint64 { return 2*(j+1000*i) + 2 }

// TestScaleLongLogReads reads a long ESK with fresh clients: every index comes
// from server counts and the search of a few probes, with a bounded number
// of requests and messages read whatever the ESK's length.
func TestScaleLongLogReads(t *testing.T) {
	ll := longLog(t)
	ctx := context.Background()
	fresh := func() *transport.Log {
		return testnats.Log(t, ll.Server.ClientURL(), transport.Config{})
	}
	n := ll.BigCount
	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range []uint64{n - 1, n / 2, 0, 1, n - 2, n/2 + 1, rng.Uint64N(n), rng.Uint64N(n), rng.Uint64N(n)} {
		l := fresh()
		ev, err := l.Get(ctx, ll.Big, i)
		if err != nil {
			t.Fatalf("Get(%s, %d): %v", ll.Big, i, err)
		}
		if ev.Index != i || ev.Seq != seqOfBig(i) {
			t.Fatalf("Get(%s, %d) = index %d seq %d, want seq %d", ll.Big, i, ev.Index, ev.Seq, seqOfBig(i))
		}
		st := l.ReadStats()
		t.Logf("Get(%d): %d direct gets, %d messages read", i, st.DirectGets, st.DirectMsgs)
		if st.DirectMsgs > 2*1000+64 {
			t.Fatalf("Get(%d) read %d messages: it walked", i, st.DirectMsgs)
		}
	}
	// Index of a sequence, on the long ESK and on a short one.
	l := fresh()
	for range 5 {
		i := rng.Uint64N(n)
		got, err := l.IndexOf(ctx, ll.Big, seqOfBig(i))
		if err != nil || got != i {
			t.Fatalf("IndexOf(%s, %d) = %d, %v; want %d", ll.Big, seqOfBig(i), got, err, i)
		}
		j := rng.Uint64N(1000)
		k := rng.Uint64N(n / 1000)
		got, err = l.IndexOf(ctx, fmt.Sprintf("scale.o%d", j), seqOfOther(j, k))
		if err != nil || got != k {
			t.Fatalf("IndexOf(scale.o%d, %d) = %d, %v; want %d", j, seqOfOther(j, k), got, err, k)
		}
	}
	if _, err := l.IndexOf(ctx, ll.Big, seqOfBig(3)+1); err == nil {
		t.Fatal("IndexOf of a sequence on another ESK succeeded")
	}
	if _, err := l.Get(ctx, ll.Big, n); err == nil {
		t.Fatalf("Get(%s, %d) past the end succeeded", ll.Big, n)
	}
	// Events of every scale ESK from the last 10 positions: each ESK's
	// index comes from counts, not from a walk from its start.
	l = fresh()
	from := ll.Total - 9
	var got int
	for ev, err := range l.Events(ctx, []string{"scale.*"}, transport.ReadOptions{From: from}) {
		if err != nil {
			t.Fatal(err)
		}
		var want uint64
		if ev.ESK == ll.Big {
			want = (ev.Seq - 1) / 2
		} else {
			var j uint64
			fmt.Sscanf(ev.ESK, "scale.o%d", &j)
			want = (ev.Seq/2 - 1 - j) / 1000
		}
		if ev.Index != want {
			t.Fatalf("Events: %s at seq %d has index %d, want %d", ev.ESK, ev.Seq, ev.Index, want)
		}
		got++
	}
	if got != 10 {
		t.Fatalf("Events from %d gave %d events, want 10", from, got)
	}
	if st := l.ReadStats(); st.DirectMsgs > 200 {
		t.Fatalf("Events from the last 10 positions read %d messages by direct get", st.DirectMsgs)
	}
}

// TestScaleLongLogWrites appends to a long ESK from fresh clients: the first
// Write learns its index and the first ExistsOrWrite its expectation from
// the leader's tail, without reading the ESK's history.
func TestScaleLongLogWrites(t *testing.T) {
	ll := longLog(t)
	ctx := context.Background()
	l := testnats.Log(t, ll.Server.ClientURL(), transport.Config{})
	pos, err := l.Write(ctx, ll.Big, []byte(`{"w":1}`))
	if err != nil || pos.Index != ll.BigCount {
		t.Fatalf("first Write = %+v, %v; want index %d", pos, err, ll.BigCount)
	}
	ll.BigCount++
	l = testnats.Log(t, ll.Server.ClientURL(), transport.Config{})
	r, err := l.ExistsOrWrite(ctx, ll.Big, ll.BigCount, []byte(`{"w":2}`))
	if err != nil || r.Outcome != transport.Written || r.Index != ll.BigCount {
		t.Fatalf("first ExistsOrWrite = %+v, %v; want written at %d", r, err, ll.BigCount)
	}
	ll.BigCount++
	l = testnats.Log(t, ll.Server.ClientURL(), transport.Config{})
	r, err = l.ExistsOrWrite(ctx, ll.Big, ll.BigCount/2, []byte(`{"w":3}`))
	if err != nil || r.Outcome != transport.Present || r.Equal || r.Seq != seqOfBig(ll.BigCount/2) {
		t.Fatalf("ExistsOrWrite in the middle = %+v, %v; want present at seq %d", r, err, seqOfBig(ll.BigCount/2))
	}
	if _, err := l.ExistsOrWrite(ctx, ll.Big, ll.BigCount+1, []byte(`{}`)); err == nil {
		t.Fatal("ExistsOrWrite past the count succeeded")
	}
	if st := l.ReadStats(); st.DirectMsgs > 2000 {
		t.Fatalf("the writes read %d messages", st.DirectMsgs)
	}
}

// TestScaleClientMemory: a client that reads the tail of the long ESK,
// reads in its middle, follows it, and touches 200,000 ESKs keeps a
// bounded amount of memory. The client runs in a process of its own
// (this test binary again), so that the server's memory does not count.
func TestScaleClientMemory(t *testing.T) {
	ll := longLog(t)
	ctx := context.Background()
	const wide = 200_000
	l := testnats.Log(t, ll.Server.ClientURL(), transport.Config{})
	var pending []*transport.PendingPublish
	for k := range wide {
		p, err := l.PublishAsync(ctx, fmt.Sprintf("wide.%d", k), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, p)
	}
	for _, p := range pending {
		if _, err := p.Result(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestScaleClientMemoryChild$", "-test.v")
	cmd.Env = append(os.Environ(), "DETBUS_MEM_CHILD_URL="+ll.Server.ClientURL(),
		fmt.Sprintf("DETBUS_MEM_CHILD_BIG=%s:%d:%d", ll.Big, ll.BigCount, ll.Total))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client process: %v\n%s", err, out)
	}
	var tail, touched, remembered int64
	for _, line := range strings.Split(string(out), "\n") {
		fmt.Sscanf(strings.TrimSpace(line), "heap growth: tail %d touched %d remembered %d", &tail, &touched, &remembered)
	}
	t.Logf("client heap growth: %d KiB after reading the tail of a %d-event ESK, %d KiB after touching %d ESKs (facts kept for %d)",
		tail>>10, ll.BigCount, touched>>10, wide, remembered)
	if tail > 5<<20 {
		t.Errorf("reading the tail of a %d-event ESK grew the client's heap by %d KiB, more than 5 MiB", ll.BigCount, tail>>10)
	}
	if touched > 16<<20 {
		t.Errorf("touching %d ESKs grew the client's heap by %d KiB, more than 16 MiB", wide, touched>>10)
	}
	if remembered == 0 || remembered > 4096 {
		t.Errorf("the client keeps facts about %d ESKs, want 1 to 4096", remembered)
	}
}

// TestScaleClientMemoryChild is the client of TestScaleClientMemory; it runs
// only in the process that test starts.
func TestScaleClientMemoryChild(t *testing.T) {
	url := os.Getenv("DETBUS_MEM_CHILD_URL")
	if url == "" {
		t.Skip("the client process of TestScaleClientMemory")
	}
	var big string
	var n, total uint64
	spec := strings.Split(os.Getenv("DETBUS_MEM_CHILD_BIG"), ":")
	big = spec[0]
	fmt.Sscan(spec[1], &n)
	fmt.Sscan(spec[2], &total)
	ctx := context.Background()
	l, err := transport.Connect(ctx, url, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := heapInUse()
	if _, err := l.Get(ctx, big, n-1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(ctx, big, n/3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(ctx, big, []byte(`{"tail":true}`)); err != nil {
		t.Fatal(err)
	}
	for _, err := range l.Events(ctx, []string{big}, transport.ReadOptions{From: total - 100_000}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	tail := int64(heapInUse()) - int64(base)
	// Touch 200,000 ESKs: follow them all, and read a few thousand by index.
	k := 0
	for ev, err := range l.Events(ctx, []string{"wide.*"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if k%40 == 0 {
			if _, err := l.Get(ctx, ev.ESK, 0); err != nil {
				t.Fatal(err)
			}
		}
		k++
	}
	touched := int64(heapInUse()) - int64(base)
	fmt.Printf("heap growth: tail %d touched %d remembered %d\n", tail, touched, l.ReadStats().ESKsRemembered)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// The long-log benchmarks time one call of a freshly opened Log (opening
// it is not timed) on the ESK of 1,000,000 events among 2,000,000, each
// beside one raw direct get of that ESK's last message in the same run.
func BenchmarkLongLogGetLast(b *testing.B) {
	benchLong(b, func(ctx context.Context, l *transport.Log, ll *testnats.LongLog) error {
		_, err := l.Get(ctx, ll.Big, ll.BigCount-1)
		return err
	})
}

func BenchmarkLongLogGetMiddle(b *testing.B) {
	var k uint64
	benchLong(b, func(ctx context.Context, l *transport.Log, ll *testnats.LongLog) error {
		k++ // a different index each time, around the middle
		_, err := l.Get(ctx, ll.Big, ll.BigCount/2+k*997%50_000)
		return err
	})
}

func BenchmarkLongLogFirstWrite(b *testing.B) {
	benchLong(b, func(ctx context.Context, l *transport.Log, ll *testnats.LongLog) error {
		pos, err := l.Write(ctx, ll.Big, []byte(`{"bench":"write"}`))
		if err == nil && pos.Index != ll.BigCount {
			err = fmt.Errorf("index %d, want %d", pos.Index, ll.BigCount)
		}
		ll.BigCount++
		return err
	})
}

func BenchmarkLongLogFirstExistsOrWrite(b *testing.B) {
	benchLong(b, func(ctx context.Context, l *transport.Log, ll *testnats.LongLog) error {
		r, err := l.ExistsOrWrite(ctx, ll.Big, ll.BigCount, []byte(`{"bench":"eow"}`))
		if err == nil && r.Outcome != transport.Written {
			err = fmt.Errorf("outcome %v", r.Outcome)
		}
		ll.BigCount++
		return err
	})
}

func BenchmarkLongLogEventsLast10(b *testing.B) {
	benchLong(b, func(ctx context.Context, l *transport.Log, ll *testnats.LongLog) error {
		st, err := l.State(ctx, "")
		if err != nil {
			return err
		}
		n := 0
		for _, err := range l.Events(ctx, []string{"scale.*"}, transport.ReadOptions{From: st.LastSeq - 9}) {
			if err != nil {
				return err
			}
			n++
		}
		if n != 10 {
			return fmt.Errorf("%d events, want 10", n)
		}
		return nil
	})
}

func benchLong(b *testing.B, op func(context.Context, *transport.Log, *testnats.LongLog) error) {
	ll := longLog(b)
	ctx := context.Background()
	url := ll.Server.ClientURL()
	b.Run("raw=direct-get-last", func(b *testing.B) {
		nc := testnats.Conn(b, url)
		subject := "$JS.API.DIRECT.GET." + transport.DefaultStream + ".events." + ll.Big
		for b.Loop() {
			m, err := nc.Request(subject, nil, 5*time.Second)
			if err != nil || m.Header.Get("Nats-Sequence") == "" {
				b.Fatalf("raw direct get: %v", err)
			}
		}
	})
	b.Run("detbus=fresh-client", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			l, err := transport.Connect(ctx, url, transport.Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			err = op(ctx, l, ll)
			b.StopTimer()
			l.Close()
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
