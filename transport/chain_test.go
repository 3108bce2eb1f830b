package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestHashEventDefinition pins the event hash (a change of the definition
// changes every chain already checkpointed) and checks what it covers.
func TestHashEventDefinition(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	h := nats.Header{"Content-Type": {"application/json"}, "Detbus-Hlc": {"1700000000123456789.0"}}
	base := transport.HashEvent("events.orders.eu", 7, at, h, []byte(`{"qty":1}`))
	// The golden values were computed from the definition in HashEvent's
	// documentation by an independent implementation (Python's hashlib).
	if got, want := base.String(), "36d4583084ffb8114b203141db1d3a61b458b28081bd3310a2d22386f92566f4"; got != want {
		t.Fatalf("HashEvent = %s, want %s", got, want)
	}
	if got, want := transport.ChainLink(transport.Hash{}, base).String(), "4d59e8b38abcead7ae6efeb5df535d51842d21cdaaa367f74a425b706cc2b8a7"; got != want {
		t.Fatalf("ChainLink = %s, want %s", got, want)
	}
	same := []nats.Header{
		{"Detbus-Hlc": {"1700000000123456789.0"}, "Content-Type": {"application/json"}},
		{"Content-Type": {"application/json"}, "Detbus-Hlc": {"1700000000123456789.0"}, "Nats-Msg-Id": {"x"}, "NATS-Expected-Last-Subject-Sequence": {"3"}},
	}
	for i, sh := range same {
		if got := transport.HashEvent("events.orders.eu", 7, at, sh, []byte(`{"qty":1}`)); got != base {
			t.Errorf("headers %d (same fields in another order, or JetStream's): hash %s, want %s", i, got, base)
		}
	}
	differ := map[string]transport.Hash{
		"subject": transport.HashEvent("events.orders.us", 7, at, h, []byte(`{"qty":1}`)),
		"seq":     transport.HashEvent("events.orders.eu", 8, at, h, []byte(`{"qty":1}`)),
		"time":    transport.HashEvent("events.orders.eu", 7, at.Add(time.Nanosecond), h, []byte(`{"qty":1}`)),
		"payload": transport.HashEvent("events.orders.eu", 7, at, h, []byte(`{"qty":2}`)),
		"header":  transport.HashEvent("events.orders.eu", 7, at, nats.Header{"Content-Type": {"application/json"}}, []byte(`{"qty":1}`)),
		"case":    transport.HashEvent("events.orders.eu", 7, at, nats.Header{"content-type": {"application/json"}, "Detbus-Hlc": {"1700000000123456789.0"}}, []byte(`{"qty":1}`)),
		"split":   transport.HashEvent("events.orders.eu", 7, at, nats.Header{"Content-Type": {"application/json", "Detbus-Hlc"}}, []byte(`{"qty":1}`)),
	}
	for what, got := range differ {
		if got == base {
			t.Errorf("a different %s gives the same hash", what)
		}
	}
	p, err := transport.ParseHash(base.String())
	if err != nil || p != base {
		t.Fatalf("ParseHash(String()) = %s, %v", p, err)
	}
	for _, bad := range []string{"", "00", base.String() + "0", "zz" + base.String()[2:]} {
		if _, err := transport.ParseHash(bad); !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("ParseHash(%q) = %v, want ErrInvalidOption", bad, err)
		}
	}
}

// mirror makes the stream name a JetStream mirror of origin on l's server
// (direct gets allowed, deletes allowed unless deny), waits until it holds
// every event of origin, and opens a Log on it.
func mirror(t *testing.T, l *transport.Log, origin, name string, deny bool) *transport.Log {
	t.Helper()
	ctx := context.Background()
	_, err := l.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: name, Mirror: &jetstream.StreamSource{Name: origin},
		AllowDirect: true, DenyDelete: deny, DenyPurge: deny})
	if err != nil {
		t.Fatal(err)
	}
	c, err := transport.Open(ctx, l.Conn(), transport.Config{Stream: name, NoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	catchUp(t, l, c)
	return c
}

// catchUp waits until copy holds the origin's last sequence.
func catchUp(t *testing.T, origin, copy *transport.Log) {
	t.Helper()
	ctx := context.Background()
	testnats.WaitFor(t, 30*time.Second, copy.Config().Stream+" to catch up", func() error {
		o, err := origin.State(ctx, "")
		if err != nil {
			return err
		}
		c, err := copy.State(ctx, "")
		if err != nil {
			return err
		}
		if c.LastSeq != o.LastSeq {
			return fmt.Errorf("copy at %d, origin at %d", c.LastSeq, o.LastSeq)
		}
		return nil
	})
}

// writeMixed writes events the ways a log receives them: SDK writes with
// headers, a run, raw JetStream publishes with and without headers.
func writeMixed(t *testing.T, l *transport.Log, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		var err error
		switch i % 4 {
		case 0:
			_, err = l.Write(ctx, "chain.a", fmt.Appendf(nil, `{"i":%d}`, i), transport.WithHLC())
		case 1:
			_, err = l.Write(ctx, "chain.b", fmt.Appendf(nil, `{"i":%d}`, i), transport.WithHeader("X-Note", "n"))
		case 2:
			_, err = l.JetStream().PublishMsg(ctx, &nats.Msg{Subject: "events.chain.raw", Data: fmt.Appendf(nil, `{"i":%d}`, i),
				Header: nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}})
		default:
			var c uint64
			if c, err = l.Count(ctx, "chain.run"); err == nil {
				_, err = l.AppendRun(ctx, "chain.run", c, [][]byte{fmt.Appendf(nil, `{"i":%d}`, i), []byte(`{}`)})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestChainSameOnMirror: the chain and every event's hash computed from a
// mirror equal the origin's, whatever wrote the events; the chain extends
// from any point to the same result.
func TestChainSameOnMirror(t *testing.T) {
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := context.Background()
	writeMixed(t, l, 40)
	c := mirror(t, l, "EVENTS", "EVENTS_COPY", true)
	if got := c.ChainOrigin(); got != "EVENTS" {
		t.Fatalf("the mirror's chain origin is %q", got)
	}
	full, err := l.Chain(ctx, transport.ChainPoint{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	onCopy, err := c.Chain(ctx, transport.ChainPoint{}, 0)
	if err != nil || onCopy != full || full.Seq == 0 || full.Hash.IsZero() {
		t.Fatalf("chain of the copy %+v (%v), of the origin %+v", onCopy, err, full)
	}
	mid, err := l.Chain(ctx, transport.ChainPoint{}, full.Seq/2)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := c.Chain(ctx, mid, full.Seq)
	if err != nil || rest != full {
		t.Fatalf("chain extended from the middle %+v (%v), want %+v", rest, err, full)
	}
	if _, err := l.Chain(ctx, full, full.Seq-1); !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("a chain backwards: %v", err)
	}
	// Event by event, read through Events on the origin and on the copy.
	var fromEvents transport.Hash
	for ev, err := range l.Events(ctx, nil, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		fromEvents = transport.ChainLink(fromEvents, l.EventHash(ev))
		cev, err := c.Get(ctx, ev.ESK, ev.Index)
		if err != nil || c.EventHash(cev) != l.EventHash(ev) {
			t.Fatalf("%s#%d: hash on the copy %s (%v), on the origin %s", ev.ESK, ev.Index, c.EventHash(cev), err, l.EventHash(ev))
		}
	}
	if fromEvents != full.Hash {
		t.Fatalf("the chain from Events is %s, from direct gets %s", fromEvents, full.Hash)
	}
}

// checkpointNow appends a checkpoint of the chain at the head, as a node
// does, and returns it.
func checkpointNow(t *testing.T, l *transport.Log) transport.Checkpoint {
	t.Helper()
	ctx := context.Background()
	p, err := l.Chain(ctx, transport.ChainPoint{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp := transport.Checkpoint{Stream: l.ChainOrigin(), Seq: p.Seq, Hash: p.Hash, By: "test"}
	writeCheckpoint(t, l, cp)
	return cp
}

func writeCheckpoint(t *testing.T, l *transport.Log, cp transport.Checkpoint) uint64 {
	t.Helper()
	data, _ := json.Marshal(cp)
	pos, err := l.Write(context.Background(), transport.ChainESK, data)
	if err != nil {
		t.Fatal(err)
	}
	return pos.Seq
}

// TestRunCheckpoints: a node's checkpointer covers the log every Every
// events, never checkpoints its own checkpoints, resumes from the newest
// after a restart, and two of them on one log write one checkpoint per
// round that both agree with.
func TestRunCheckpoints(t *testing.T) {
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := context.Background()
	run := func(by string) (stop func()) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- l.RunCheckpoints(cctx, transport.CheckpointConfig{Every: 10, Interval: time.Hour, By: by})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	covered := func(seq uint64) { t.Helper(); testnats.WaitCovered(t, l, seq) }
	stop := run("n1")
	writeMixed(t, l, 25)
	st, _ := l.State(ctx, "")
	covered(st.LastSeq - 9)
	stop()
	// After a restart, and with a second checkpointer racing it.
	stop1, stop2 := run("n1"), run("n2")
	writeMixed(t, l, 30)
	st, _ = l.State(ctx, "")
	covered(st.LastSeq - 9)
	// A checkpoint that an admin forges at the next index: the
	// checkpointers see it disagree and write theirs after it.
	st, _ = l.State(ctx, "")
	forgedAt := writeCheckpoint(t, l, transport.Checkpoint{Stream: "EVENTS", Seq: st.LastSeq, Hash: transport.Hash{1}, By: "mallory"})
	writeMixed(t, l, 12)
	st, _ = l.State(ctx, "")
	covered(st.LastSeq - 9)
	stop1()
	stop2()
	rep, err := l.VerifyChain(ctx, transport.VerifyOptions{})
	if !errors.Is(err, transport.ErrChainMismatch) || rep.Confirmed == 0 || rep.Confirmed != rep.Checkpoints-1 ||
		len(rep.Problems) != 1 || rep.Problems[0].At != forgedAt || rep.Problems[0].Kind != transport.ProblemForged {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	// Claims advance, and no checkpoint covers only checkpoints.
	var last uint64
	for ev, err := range l.Events(ctx, []string{transport.ChainESK}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		cp, _ := transport.DecodeCheckpoint(ev.Data)
		if cp.By == "mallory" {
			continue
		}
		if cp.Seq < last {
			t.Fatalf("checkpoint #%d claims %d after a claim of %d", ev.Index, cp.Seq, last)
		}
		last = ev.Seq
	}
	// Idle: nothing to checkpoint, whatever the interval.
	n, _ := l.Count(ctx, transport.ChainESK)
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := l.RunCheckpoints(cctx, transport.CheckpointConfig{Every: 1, Interval: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if m, _ := l.Count(ctx, transport.ChainESK); m > n+1 {
		t.Fatalf("an idle log got %d checkpoints", m-n)
	}
}
