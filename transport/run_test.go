package transport_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// indexed returns n events naming their index, from index from, and the
// writer.
func indexed(w string, from uint64, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"i":%d,"w":%q}`, from+uint64(i), w)
	}
	return out
}

// TestAppendRun: a run lands at consecutive indices; a run over indices
// another writer filled keeps the other's events and fills only the
// rest; a run past the count is refused; a run at a stale index stores
// nothing.
func TestAppendRun(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	r, err := l.AppendRun(ctx, "run.x", 0, indexed("a", 0, 5))
	if err != nil || r.Filled != 5 || r.WriteID == "" {
		t.Fatalf("first run: %+v %v", r, err)
	}
	if _, err := l.Write(ctx, "run.other", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Another writer fills 5..7; a run for 5..11 keeps those and fills
	// 8..11.
	other := testnats.Log(t, s.ClientURL(), transport.Config{})
	o, err := other.AppendRun(ctx, "run.x", 5, indexed("b", 5, 3))
	if err != nil || o.Filled != 3 {
		t.Fatalf("the other writer: %+v %v", o, err)
	}
	r2, err := l.AppendRun(ctx, "run.x", 5, indexed("a", 5, 7))
	if err != nil || r2.Filled != 7 {
		t.Fatalf("run over filled indices: %+v %v", r2, err)
	}
	fresh := testnats.Log(t, s.ClientURL(), transport.Config{})
	for i := range 12 {
		ev, err := fresh.Get(ctx, "run.x", uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		w, id := "a", r.WriteID
		switch {
		case i >= 5 && i < 8:
			w, id = "b", o.WriteID
		case i >= 8:
			id = r2.WriteID
		}
		if want := indexed(w, uint64(i), 1)[0]; !bytes.Equal(ev.Data, want) || ev.Header.Get(transport.HeaderWriteID) != id {
			t.Fatalf("index %d: %s by %s, want %s by %s", i, ev.Data, ev.Header.Get(transport.HeaderWriteID), want, id)
		}
	}
	// Past the count.
	var ahead *transport.IndexAheadError
	if _, err := fresh.AppendRun(ctx, "run.x", 13, indexed("c", 13, 2)); !errors.As(err, &ahead) || ahead.Count != 12 {
		t.Fatalf("run ahead: %v", err)
	}
	// Stale: from index 0, by a log that knows nothing of the ESK, and
	// over events written without message ids.
	for i := range 4 {
		if _, err := l.ExistsOrWrite(ctx, "run.plain", uint64(i), indexed("p", uint64(i), 1)[0]); err != nil {
			t.Fatal(err)
		}
	}
	stale := testnats.Log(t, s.ClientURL(), transport.Config{})
	if r, err := stale.AppendRun(ctx, "run.plain", 0, indexed("s", 0, 6)); err != nil || r.Filled != 6 {
		t.Fatalf("stale run: %+v %v", r, err)
	}
	if n, _ := fresh.Count(ctx, "run.plain"); n != 6 {
		t.Fatalf("run.plain holds %d events, want 6", n)
	}
	for i := range 6 {
		ev, _ := fresh.Get(ctx, "run.plain", uint64(i))
		w := "p"
		if i >= 4 {
			w = "s"
		}
		if want := indexed(w, uint64(i), 1)[0]; !bytes.Equal(ev.Data, want) {
			t.Fatalf("run.plain %d: %s, want %s", i, ev.Data, want)
		}
	}
	if n, _ := fresh.Count(ctx, "run.x"); n != 12 {
		t.Fatalf("run.x holds %d events", n)
	}
}

// TestAppendRunLimits: the 1,000-event limit, and bad events refused
// before anything is written.
func TestAppendRunLimits(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	if r, err := l.AppendRun(ctx, "rl.x", 0, indexed("a", 0, transport.MaxBatch)); err != nil || r.Filled != transport.MaxBatch {
		t.Fatalf("a run of %d: %+v %v", transport.MaxBatch, r, err)
	}
	if _, err := l.AppendRun(ctx, "rl.x", transport.MaxBatch, indexed("a", 0, transport.MaxBatch+1)); !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("a run of %d: %v", transport.MaxBatch+1, err)
	}
	big := indexed("a", transport.MaxBatch, 3)
	big[1] = bytes.Repeat([]byte("x"), transport.DefaultMaxPayload+1)
	if _, err := l.AppendRun(ctx, "rl.x", transport.MaxBatch, big); !errors.Is(err, transport.ErrPayloadTooLarge) {
		t.Fatalf("a run with an oversized event: %v", err)
	}
	if _, err := l.AppendRun(ctx, "rl..x", 0, indexed("a", 0, 1)); !errors.Is(err, transport.ErrInvalidESK) {
		t.Fatalf("a run to a bad ESK: %v", err)
	}
	heavy := make([][]byte, 64)
	for i := range heavy {
		heavy[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 256<<10)
	}
	if r, err := l.AppendRun(ctx, "rl.y", 0, heavy); err != nil || r.Filled != 64 {
		t.Fatalf("a 16 MiB run: %+v %v", r, err)
	}
	if n, _ := l.Count(ctx, "rl.x"); n != transport.MaxBatch {
		t.Fatalf("rl.x holds %d events", n)
	}
}

// TestAppendRunRace: writers append the same indices in runs of random
// lengths, each from the count it reads just before, so that runs start
// inside others in flight; every index gets exactly one event, the one
// for that index.
func TestAppendRunRace(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T) (string, transport.Config){
		"single node": func(t *testing.T) (string, transport.Config) {
			return testnats.Node(t).ClientURL(), transport.Config{}
		},
		"three-node cluster R3": func(t *testing.T) (string, transport.Config) {
			return testnats.URLs(testnats.Cluster(t, 3)), transport.Config{Replicas: 3}
		},
	} {
		t.Run(name, func(t *testing.T) {
			u, cfg := setup(t)
			ctx := ctxT(t)
			const writers, total = 4, 20000
			var wg sync.WaitGroup
			for w := range writers {
				l := testnats.Log(t, u, cfg)
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				wg.Go(func() {
					next := uint64(0)
					for next < total {
						if rng.IntN(2) == 0 {
							c, err := l.Count(ctx, "race.r")
							if err != nil {
								t.Errorf("writer %d: count: %v", w, err)
								return
							}
							next = max(next, c)
							if next >= total {
								break
							}
						}
						n := min(1+rng.IntN(500), int(total-next))
						r, err := l.AppendRun(ctx, "race.r", next, indexed(fmt.Sprint("w", w), next, n))
						if err != nil {
							t.Errorf("writer %d at %d: %v", w, next, err)
							return
						}
						next += uint64(r.Filled)
					}
				})
			}
			wg.Wait()
			l := testnats.Log(t, u, cfg)
			if n, _ := l.Count(ctx, "race.r"); n != total {
				t.Fatalf("race.r holds %d events, want %d", n, total)
			}
			writersSeen := map[string]bool{}
			i := uint64(0)
			for ev, err := range l.Events(ctx, []string{"race.r"}, transport.ReadOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				var v struct {
					I uint64
					W string
				}
				if err := json.Unmarshal(ev.Data, &v); err != nil || v.I != ev.Index || ev.Index != i {
					t.Fatalf("event %d at index %d: %s", i, ev.Index, ev.Data)
				}
				writersSeen[v.W] = true
				i++
			}
			t.Logf("indices filled by %d writers", len(writersSeen))
		})
	}
}

// TestAppendRunCutShort: a writer that dies between the messages of a run
// leaves the messages sent before at their indices, nothing else; a run
// of another writer fills the rest, exactly. An atomic batch cut short
// the same way leaves nothing.
func TestAppendRunCutShort(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	if _, err := l.AppendRun(ctx, "cut.r", 0, indexed("first", 0, 3)); err != nil {
		t.Fatal(err)
	}
	last, err := l.Get(ctx, "cut.r", 2)
	if err != nil {
		t.Fatal(err)
	}
	// A connection sends 4 of a run's 10 messages, as AppendRun sends
	// them, and dies.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	inbox := nc.NewInbox()
	for i := range 4 {
		m := nats.NewMsg(l.Subject("cut.r"))
		m.Data = indexed("dead", 3+uint64(i), 1)[0]
		m.Header.Set("Nats-Msg-Id", "detbus.cut.r."+strconv.Itoa(3+i))
		op := 1
		if i == 0 {
			op = 0
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.Seq, 10))
		}
		m.Reply = fmt.Sprintf("%s.dead1.500.fail.%d.%d.$FI", inbox, i+1, op)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	fresh := testnats.Log(t, s.ClientURL(), transport.Config{})
	testnats.WaitFor(t, 10*time.Second, "the dead run's messages", func() error {
		if n, err := fresh.Count(ctx, "cut.r"); err != nil || n != 7 {
			return fmt.Errorf("%d events, %v", n, err)
		}
		return nil
	})
	r, err := fresh.AppendRun(ctx, "cut.r", 3, indexed("live", 3, 10))
	if err != nil || r.Filled != 10 {
		t.Fatalf("run after the dead one: %+v %v", r, err)
	}
	for i := range 13 {
		ev, err := fresh.Get(ctx, "cut.r", uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		w := "first"
		switch {
		case i >= 7:
			w = "live"
		case i >= 3:
			w = "dead"
		}
		if want := indexed(w, uint64(i), 1)[0]; !bytes.Equal(ev.Data, want) {
			t.Fatalf("index %d: %s, want %s", i, ev.Data, want)
		}
	}
	if n, _ := fresh.Count(ctx, "cut.r"); n != 13 {
		t.Fatalf("cut.r holds %d events, want 13", n)
	}

	// An atomic batch cut after 4 of its 10 messages lands nothing, and
	// does not stand in the way of the next.
	nc, err = nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		m := nats.NewMsg(l.Subject("cut.a"))
		m.Data = indexed("dead", uint64(i), 1)[0]
		m.Header.Set("Nats-Batch-Id", "dead2")
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		}
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if n, _ := fresh.Count(ctx, "cut.a"); n != 0 {
		t.Fatalf("a cut atomic batch left %d events", n)
	}
	if b, err := fresh.AppendBatch(ctx, "cut.a", 0, indexed("live", 0, 10)); err != nil || b.Outcome != transport.Written {
		t.Fatalf("batch after the cut one: %+v %v", b, err)
	}
	if n, _ := fresh.Count(ctx, "cut.a"); n != 10 {
		t.Fatalf("cut.a holds %d events, want 10", n)
	}
}
