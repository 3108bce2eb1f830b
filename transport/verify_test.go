package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/highwayhash"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

func writeN(t *testing.T, l *transport.Log, esk string, n int) {
	t.Helper()
	for i := range n {
		if _, err := l.Write(context.Background(), esk, fmt.Appendf(nil, `{"i":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func problems(rep transport.ChainReport) string {
	var b bytes.Buffer
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return b.String()
}

// TestVerifyChainIsIncremental: a verification that resumes from the last
// checkpoint confirmed reads only what follows it, and refuses a resume
// point the stream no longer holds.
func TestVerifyChainIsIncremental(t *testing.T) {
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := context.Background()
	writeN(t, l, "v.a", 30)
	checkpointNow(t, l)
	writeN(t, l, "v.b", 30)
	second := checkpointNow(t, l)
	writeN(t, l, "v.a", 5)
	rep, err := l.VerifyChain(ctx, transport.VerifyOptions{})
	if err != nil || rep.Confirmed != 2 || rep.Checkpoints != 2 || rep.Resume == nil || rep.Resume.Checkpoint != second || rep.From != 1 || rep.Events != rep.To {
		t.Fatalf("first verification: %+v, %v", rep, err)
	}
	writeN(t, l, "v.c", 20)
	third := checkpointNow(t, l)
	before := l.ReadStats()
	again, err := l.VerifyChain(ctx, transport.VerifyOptions{From: rep.Resume})
	if err != nil || again.Confirmed != 2 || again.Resume.Checkpoint != third || again.From != second.Seq+1 {
		t.Fatalf("resumed verification: %+v, %v", again, err)
	}
	if again.Events != again.To-second.Seq {
		t.Fatalf("resumed verification hashed %d events, want the %d after position %d", again.Events, again.To-second.Seq, second.Seq)
	}
	if read := l.ReadStats().DirectMsgs - before.DirectMsgs; read > again.Events+1 {
		t.Fatalf("resumed verification read %d messages for %d events", read, again.Events)
	}
	if again.Head.Hash != third.Hash || again.Head.Seq != again.To {
		// No event after the third checkpoint but itself: the head is
		// one link further.
		full, _ := l.Chain(ctx, transport.ChainPoint{}, again.To)
		if again.Head != full {
			t.Fatalf("head %+v, the chain from the start %+v", again.Head, full)
		}
	}
	// A resume point that is not what the stream holds: a state kept for
	// another log, or a stream that changed.
	wrong := *again.Resume
	wrong.At--
	if _, err := l.VerifyChain(ctx, transport.VerifyOptions{From: &wrong}); !errors.Is(err, transport.ErrChainMismatch) {
		t.Fatalf("verification from a resume point that is not there: %v", err)
	}
	wrong = *again.Resume
	wrong.Hash[0] ^= 1
	if _, err := l.VerifyChain(ctx, transport.VerifyOptions{From: &wrong}); !errors.Is(err, transport.ErrChainMismatch) {
		t.Fatalf("verification from a resume point with another hash: %v", err)
	}
}

// TestVerifyFindsForgedCheckpoints: checkpoints written by an admin who
// does not follow the chain are reported, each at its position, and the
// genuine ones around them are confirmed.
func TestVerifyFindsForgedCheckpoints(t *testing.T) {
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := context.Background()
	writeN(t, l, "f.a", 20)
	first := checkpointNow(t, l)
	writeN(t, l, "f.a", 10)
	st, _ := l.State(ctx, "")
	bogus := transport.Checkpoint{Stream: "EVENTS", Seq: st.LastSeq, Hash: transport.HashEvent("x", 1, st.LastTime, nil, nil), By: "mallory"}
	forgedAt := writeCheckpoint(t, l, bogus)
	future := writeCheckpoint(t, l, transport.Checkpoint{Stream: "EVENTS", Seq: forgedAt + 5, Hash: bogus.Hash})
	foreign := writeCheckpoint(t, l, transport.Checkpoint{Stream: "OTHER", Seq: first.Seq, Hash: first.Hash})
	backwards := writeCheckpoint(t, l, transport.Checkpoint{Stream: "EVENTS", Seq: first.Seq - 3, Hash: bogus.Hash})
	junk, err := l.Write(ctx, transport.ChainESK, []byte(`{"not":"a checkpoint"}`))
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, l, "f.b", 10)
	checkpointNow(t, l)
	rep, err := l.VerifyChain(ctx, transport.VerifyOptions{})
	if !errors.Is(err, transport.ErrChainMismatch) {
		t.Fatalf("verify: %v", err)
	}
	want := map[uint64]transport.ProblemKind{forgedAt: transport.ProblemForged, future: transport.ProblemForged, foreign: transport.ProblemForged,
		backwards: transport.ProblemForged, junk.Seq: transport.ProblemMalformed}
	if len(rep.Problems) != len(want) || rep.Confirmed != 2 {
		t.Fatalf("confirmed %d, problems:%s", rep.Confirmed, problems(rep))
	}
	for _, p := range rep.Problems {
		if want[p.At] != p.Kind {
			t.Fatalf("problem at %d is %s, want %q:%s", p.At, p.Kind, want[p.At], problems(rep))
		}
	}
	if p := rep.Problems[0]; p.At != forgedAt || p.Claim != bogus || p.Computed.IsZero() {
		t.Fatalf("the forged checkpoint's problem: %+v", p)
	}

	// A forged checkpoint that no checkpoint follows: the stream alone
	// cannot tell it from a changed event; the reference can.
	writeN(t, l, "f.c", 3)
	st, _ = l.State(ctx, "")
	last := writeCheckpoint(t, l, transport.Checkpoint{Stream: "EVENTS", Seq: st.LastSeq, Hash: bogus.Hash})
	rep, _ = l.VerifyChain(ctx, transport.VerifyOptions{})
	if p := rep.Problems[len(rep.Problems)-1]; p.At != last || p.Kind != transport.ProblemDiffers || p.After == 0 {
		t.Fatalf("a last forged checkpoint, alone:%s", problems(rep))
	}
	ref := mirror(t, l, "EVENTS", "EVENTS_REF", true)
	rep, _ = l.VerifyChain(ctx, transport.VerifyOptions{Against: ref})
	if p := rep.Problems[len(rep.Problems)-1]; p.At != last || p.Kind != transport.ProblemForged {
		t.Fatalf("a last forged checkpoint, against an equal copy:%s", problems(rep))
	}
}

// TestVerifyFindsAnEventDeletedFromACopy: a copy that lost an event (a
// mirror that allows deletes) differs from its checkpoints from there on;
// against the origin, the verifier names the event.
func TestVerifyFindsAnEventDeletedFromACopy(t *testing.T) {
	l := testnats.Log(t, testnats.Node(t).ClientURL(), transport.Config{})
	ctx := context.Background()
	writeN(t, l, "d.a", 20)
	checkpointNow(t, l)
	writeN(t, l, "d.a", 20)
	checkpointNow(t, l)
	writeN(t, l, "d.b", 5)
	c := mirror(t, l, "EVENTS", "EVENTS_COPY", false)
	if rep, err := c.VerifyChain(ctx, transport.VerifyOptions{}); err != nil || rep.Confirmed != 2 {
		t.Fatalf("the intact copy: %+v, %v", rep, err)
	}
	ev, err := c.Get(ctx, "d.a", 30)
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.JetStream().Stream(ctx, "EVENTS_COPY")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, ev.Seq); err != nil {
		t.Fatal(err)
	}
	rep, err := c.VerifyChain(ctx, transport.VerifyOptions{})
	if !errors.Is(err, transport.ErrChainMismatch) || len(rep.Problems) != 1 || rep.Problems[0].Kind != transport.ProblemDiffers || rep.Confirmed != 1 {
		t.Fatalf("the copy with an event deleted: %v%s", err, problems(rep))
	}
	rep, _ = c.VerifyChain(ctx, transport.VerifyOptions{Against: l})
	if p := rep.Problems[0]; p.FirstDiff != ev.Seq || p.Kind != transport.ProblemDiffers || p.After >= ev.Seq {
		t.Fatalf("against the origin: %+v", p)
	}
	if _, err := l.VerifyChain(ctx, transport.VerifyOptions{}); err != nil {
		t.Fatalf("the origin: %v", err)
	}
}

// TestVerifyFindsAnEventChangedInACopysStore: an event's payload changed
// in the copy's file store, with the store's own checksum made to match
// (NATS serves it as if nothing happened): the verifier finds it.
func TestVerifyFindsAnEventChangedInACopysStore(t *testing.T) {
	dir := t.TempDir()
	start := func() *transport.Server {
		s, err := transport.StartServer(transport.ServerConfig{Name: "tamper", Host: "127.0.0.1", Port: -1, StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		return s
	}
	s := start()
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := context.Background()
	writeN(t, l, "bank.commands.alice", 10)
	pos, err := l.Write(ctx, "bank.commands.alice", []byte(`{"op":"deposit","amount":100}`))
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, l, "bank.commands.bob", 10)
	checkpointNow(t, l)
	writeN(t, l, "bank.commands.bob", 10)
	checkpointNow(t, l)
	mirror(t, l, "EVENTS", "EVENTS_COPY", true)
	l.Close()
	s.Shutdown()

	changeStoredPayload(t, dir, "EVENTS_COPY", pos.Seq, []byte(`"amount":100`), []byte(`"amount":900`))

	s = start()
	l = testnats.Log(t, s.ClientURL(), transport.Config{})
	c, err := transport.Open(ctx, l.Conn(), transport.Config{Stream: "EVENTS_COPY", NoProvision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ev, err := c.Get(ctx, "bank.commands.alice", pos.Index)
	if err != nil || !bytes.Contains(ev.Data, []byte(`"amount":900`)) {
		t.Fatalf("the copy serves %s (%v): the store was not changed", ev.Data, err)
	}
	rep, err := c.VerifyChain(ctx, transport.VerifyOptions{})
	if !errors.Is(err, transport.ErrChainMismatch) || len(rep.Problems) != 2 || rep.Confirmed != 0 {
		t.Fatalf("the changed copy: %v%s", err, problems(rep))
	}
	for _, p := range rep.Problems {
		if p.Kind != transport.ProblemDiffers || p.After != 0 {
			t.Fatalf("the changed copy: %+v", p)
		}
	}
	rep, _ = c.VerifyChain(ctx, transport.VerifyOptions{Against: l})
	for _, p := range rep.Problems {
		if p.Kind != transport.ProblemDiffers || p.FirstDiff != pos.Seq {
			t.Fatalf("against the origin: %s", p)
		}
	}
	if rep, err := l.VerifyChain(ctx, transport.VerifyOptions{}); err != nil || rep.Confirmed != 2 {
		t.Fatalf("the origin: %+v, %v", rep, err)
	}
}

// changeStoredPayload replaces old by new (of the same length) in the
// payload of the message at seq in stream's file store, and rewrites the
// record's checksum as the server computes it (highwayhash keyed by the
// stream and block), so that the server loads the record as valid.
func changeStoredPayload(t *testing.T, dir, stream string, seq uint64, old, new []byte) {
	t.Helper()
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", stream, "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatalf("no message blocks of %s under %s", stream, dir)
	}
	le := binary.LittleEndian
	const hbit = 1 << 31
	for _, path := range blocks {
		buf, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var index uint32
		fmt.Sscanf(filepath.Base(path), "%d.blk", &index)
		for off := 0; off+22 <= len(buf); {
			rl := le.Uint32(buf[off:])
			hasHeaders := rl&hbit != 0
			rl &^= hbit
			rec := buf[off : off+int(rl)]
			off += int(rl)
			if le.Uint64(rec[4:]) != seq {
				continue
			}
			slen := int(le.Uint16(rec[20:]))
			data := rec[22 : len(rec)-8] // subject, [header length, header], payload
			body := data[slen:]
			if hasHeaders {
				body = data[slen+4:]
			}
			i := bytes.Index(body, old)
			if i < 0 || len(old) != len(new) {
				t.Fatalf("message %d does not hold %q", seq, old)
			}
			copy(body[i:], new)
			key := sha256.Sum256(fmt.Appendf(nil, "%s-%d", stream, index))
			hh, err := highwayhash.New64(key[:])
			if err != nil {
				t.Fatal(err)
			}
			hh.Write(rec[4:20])
			hh.Write(data[:slen])
			hh.Write(body)
			copy(rec[len(rec)-8:], hh.Sum(nil))
			if err := os.WriteFile(path, buf, 0o640); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("message %d of %s not found in its blocks", seq, stream)
}
