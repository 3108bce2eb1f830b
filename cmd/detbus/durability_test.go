package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// serveProc is `detbus serve` run as a subprocess.
type serveProc struct {
	*proc
	url string
}

// startServeProc runs the detbus binary's serve command on a free loopback
// port, without its HTTP servers, storing in dir, with the given extra
// flags, and waits until it says it is ready. The process is killed at
// cleanup if it still runs.
func startServeProc(t *testing.T, dir string, extra ...string) *serveProc {
	t.Helper()
	port := testnats.FreePorts(t, 1)[0]
	args := append([]string{"serve", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--http-port", "0", "--http", "", "--data", dir}, extra...)
	p := &serveProc{proc: startProc(t, fmt.Sprintf("serve %v", args), args...), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	p.waitOutput(t, 60*time.Second, "detbus node ready")
	if !strings.Contains(p.out.String(), "NATS:        "+p.url+" ") {
		t.Fatalf("serve output does not name %s:\n%s", p.url, p.out.String())
	}
	return p
}

// kill SIGKILLs the process, waits until it has exited, and checks that
// the SIGKILL ended it.
func (p *serveProc) kill(t *testing.T) {
	t.Helper()
	p.proc.kill(t)
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("serve ended with %v, not by SIGKILL", p.cmd.ProcessState)
	}
}

// ackedEvent is an event whose write was acknowledged.
type ackedEvent struct {
	pos     transport.Position
	payload []byte
}

// TestAcknowledgedWritesSurviveKill: for each fsync mode, events written
// through the Go SDK to a `detbus serve` process (plain, pipelined and
// conditional writes) are all back, at the same index and stream sequence
// with the same payload, after the process is SIGKILLed right after the
// last acknowledgement and restarted on the same data directory; each
// ESK's count is what was acknowledged and indices continue from there.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flags []string
		shown string // the fsync line of the ready message
	}{
		// NATS's default interval is what serve does without --sync.
		{"default", nil, "fsync:       NATS default"},
		{"always", []string{"--sync", "always"}, "fsync:       always"},
		{"1s", []string{"--sync", "1s"}, "fsync:       1s"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ackedWritesSurviveKill(t, mode.flags, mode.shown)
		})
	}
}

func ackedWritesSurviveKill(t *testing.T, flags []string, shown string) {
	const events, batch = 300, 10
	esks := []string{"dur.a", "dur.b.x", "dur.c"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()

	p := startServeProc(t, dir, flags...)
	if !strings.Contains(p.out.String(), shown) {
		t.Fatalf("serve output lacks %q:\n%s", shown, p.out.String())
	}
	l, err := transport.Connect(ctx, p.url, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// Batches of ten events, round robin over the ESKs, each batch
	// written one way: Write, WriteAsync (all ten in flight, then
	// awaited) or ExistsOrWrite at the ESK's next index.
	acked := map[string][]ackedEvent{}
	record := func(pos transport.Position, payload []byte) {
		t.Helper()
		if want := uint64(len(acked[pos.ESK])); pos.Index != want {
			t.Fatalf("%s acknowledged at index %d, want %d", pos.ESK, pos.Index, want)
		}
		acked[pos.ESK] = append(acked[pos.ESK], ackedEvent{pos, payload})
	}
	var lastSeq uint64
	for b := 0; b < events/batch; b++ {
		var pending []*transport.PendingWrite
		var pendingPayloads [][]byte
		for j := range batch {
			i := b*batch + j
			esk := esks[i%len(esks)]
			payload := fmt.Appendf(nil, `{"i":%d,"way":%d}`, i, b%3)
			switch b % 3 {
			case 0:
				pos, err := l.Write(ctx, esk, payload)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				record(pos, payload)
			case 1:
				pw, err := l.WriteAsync(ctx, esk, payload)
				if err != nil {
					t.Fatalf("write async %d: %v", i, err)
				}
				pending = append(pending, pw)
				pendingPayloads = append(pendingPayloads, payload)
			case 2:
				res, err := l.ExistsOrWrite(ctx, esk, uint64(len(acked[esk])), payload)
				if err != nil || res.Outcome != transport.Written {
					t.Fatalf("exists-or-write %d: %+v, %v", i, res, err)
				}
				record(res.Position, payload)
			}
		}
		for k, pw := range pending {
			pos, err := pw.Result()
			if err != nil {
				t.Fatalf("write async: %v", err)
			}
			record(pos, pendingPayloads[k])
		}
		for _, evs := range acked {
			lastSeq = max(lastSeq, evs[len(evs)-1].pos.Seq)
		}
	}
	if lastSeq != events {
		t.Fatalf("last acknowledged stream sequence %d, want %d", lastSeq, events)
	}

	// No graceful shutdown: SIGKILL right after the last acknowledgement.
	p.kill(t)
	l.Close()

	q := startServeProc(t, dir, flags...)
	l2, err := transport.Connect(ctx, q.url, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	for _, esk := range esks {
		want := acked[esk]
		n, err := l2.Count(ctx, esk)
		if err != nil {
			t.Fatal(err)
		}
		if n != uint64(len(want)) {
			t.Errorf("%s: count %d after restart, %d acknowledged", esk, n, len(want))
		}
		for _, a := range want {
			ev, err := l2.Get(ctx, esk, a.pos.Index)
			if err != nil {
				t.Errorf("%s #%d (seq %d) after restart: %v", esk, a.pos.Index, a.pos.Seq, err)
				continue
			}
			if ev.Index != a.pos.Index || ev.Seq != a.pos.Seq || !bytes.Equal(ev.Data, a.payload) {
				t.Errorf("%s #%d after restart: index %d seq %d %s, acknowledged seq %d %s",
					esk, a.pos.Index, ev.Index, ev.Seq, ev.Data, a.pos.Seq, a.payload)
			}
		}
	}
	if t.Failed() {
		return
	}
	st, err := l2.State(ctx, "dur.>")
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != events || st.LastSeq != events {
		t.Errorf("stream after restart: %d messages, last seq %d; want %d, %d", st.Messages, st.LastSeq, events, events)
	}

	// Indices continue contiguously: the next index of each ESK is free
	// and the one before it is taken.
	for _, esk := range esks {
		next := uint64(len(acked[esk]))
		res, err := l2.ExistsOrWrite(ctx, esk, next, []byte(`{"after":"restart"}`))
		if err != nil || res.Outcome != transport.Written || res.Index != next {
			t.Errorf("%s: exists-or-write at %d after restart: %+v, %v", esk, next, res, err)
		}
		last := acked[esk][next-1]
		res, err = l2.ExistsOrWrite(ctx, esk, next-1, last.payload)
		if err != nil || res.Outcome != transport.Present || !res.Equal {
			t.Errorf("%s: exists-or-write at %d after restart: %+v, %v, want present and equal", esk, next-1, res, err)
		}
	}
}
