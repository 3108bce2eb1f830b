package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// detbusCmd runs the detbus binary with args and returns its output and
// exit status.
func detbusCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, detbusBinary(t), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("detbus %v: %v\n%s", args, err, out)
	return "", -1
}

// TestVerifyAndTraceCommands runs a node with the bank DET and chain
// checkpoints as a process: `detbus verify` confirms the chain and then
// resumes from where it stopped, reports a forged checkpoint, and checks
// a copy of the log; `detbus trace` walks from a bank decision back to
// its command, and fails naming the link when an output's input hash
// does not match or its input is missing.
func TestVerifyAndTraceCommands(t *testing.T) {
	node := startServeProc(t, t.TempDir(), "--transform", "bank", "--chain-every", "20", "--chain-interval", "200ms")
	l := testnats.Log(t, node.url, transport.Config{NoProvision: true})
	ctx := context.Background()
	writeBankCommands(t, l, rand.New(rand.NewPCG(7, 7)), 0, 60)
	testnats.WaitFor(t, 60*time.Second, "60 decisions", func() error {
		if n, err := l.Count(ctx, "bank.decisions"); err != nil || n < 60 {
			return fmt.Errorf("%d decisions (%v)", n, err)
		}
		return nil
	})
	st, err := l.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	testnats.WaitCovered(t, l, st.LastSeq)
	state := filepath.Join(t.TempDir(), "verify.json")
	verify := func(extra ...string) (string, int) {
		return detbusCmd(t, append([]string{"verify", "--nats", node.url, "--state", state}, extra...)...)
	}

	out, code := verify()
	if code != 0 || !strings.Contains(out, "from the first event") || !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}
	writeBankCommands(t, l, rand.New(rand.NewPCG(8, 8)), 60, 10)
	st, _ = l.State(ctx, "")
	testnats.WaitCovered(t, l, st.LastSeq)
	out, code = verify()
	if code != 0 || !strings.Contains(out, "resumed after position") || !strings.HasSuffix(out, "ok\n") {
		t.Fatalf("verify again: exit %d\n%s", code, out)
	}
	var rep transport.ChainReport
	out, code = verify("--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.From <= 1 || rep.Events >= rep.To || rep.Confirmed == 0 {
		t.Fatalf("verify --json: exit %d, %+v (%v)\n%s", code, rep, err, out)
	}

	// trace: from a decision back to its command.
	out, code = detbusCmd(t, "trace", "bank.decisions", "42", "--nats", node.url)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "bank.decisions#42  seq ") || !strings.Contains(lines[1], "hash matches") ||
		!strings.HasPrefix(lines[2], "bank.commands.") || lines[3] != "  a source's event" {
		t.Fatalf("trace: exit %d\n%s", code, out)
	}
	decision, err := l.Get(ctx, "bank.decisions", 42)
	if err != nil {
		t.Fatal(err)
	}
	in, ok, err := transport.InputOf(decision.Header)
	if err != nil || !ok {
		t.Fatalf("decision 42 names no input: %v", err)
	}
	command, err := l.Get(ctx, in.ESK, in.Index)
	if err != nil || !strings.Contains(lines[2], fmt.Sprintf("%s#%d  seq %d", in.ESK, in.Index, command.Seq)) {
		t.Fatalf("the trace names %q, the decision's input is %s (%v)", lines[2], in, err)
	}

	// A broken link: an output naming the command with another hash, and
	// one naming an input in a stream that is not here.
	forged := in
	forged.Hash[0] ^= 0xff
	if _, err := l.Write(ctx, "audit.derived", decision.Data, transport.WithInput(forged)); err != nil {
		t.Fatal(err)
	}
	missing := in
	missing.Stream = "EVENTS_GONE"
	if _, err := l.Write(ctx, "audit.derived", decision.Data, transport.WithInput(missing)); err != nil {
		t.Fatal(err)
	}
	out, code = detbusCmd(t, "trace", "audit.derived", "0", "--nats", node.url)
	if code != 1 || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "broken link from audit.derived#0") || !strings.Contains(out, "hashes to") {
		t.Fatalf("trace of an output with a wrong input hash: exit %d\n%s", code, out)
	}
	out, code = detbusCmd(t, "trace", "audit.derived", "1", "--nats", node.url)
	if code != 1 || !strings.Contains(out, "no stream here holds stream EVENTS_GONE") {
		t.Fatalf("trace of an output with a missing input: exit %d\n%s", code, out)
	}
	if out, code = detbusCmd(t, "trace", "bank.decisions", "x", "--nats", node.url); code != 2 {
		t.Fatalf("trace with a bad index: exit %d\n%s", code, out)
	}

	// A forged checkpoint: reported once the node's next checkpoint
	// confirms the events it lies about.
	st, _ = l.State(ctx, "")
	bad, _ := json.Marshal(transport.Checkpoint{Stream: "EVENTS", Seq: st.LastSeq, Hash: in.Hash, By: "mallory"})
	forgedAt, err := l.Write(ctx, transport.ChainESK, bad)
	if err != nil {
		t.Fatal(err)
	}
	writeBankCommands(t, l, rand.New(rand.NewPCG(9, 9)), 70, 5)
	st, _ = l.State(ctx, "")
	testnats.WaitCovered(t, l, st.LastSeq)
	out, code = verify()
	if code != 1 || !strings.Contains(out, fmt.Sprintf("PROBLEM: forged checkpoint at position %d", forgedAt.Seq)) {
		t.Fatalf("verify with a forged checkpoint: exit %d\n%s", code, out)
	}
	// The state did not move past the problem: it is found again.
	if out, code = verify(); code != 1 || !strings.Contains(out, "forged checkpoint") {
		t.Fatalf("verify again with a forged checkpoint: exit %d\n%s", code, out)
	}

	// A copy of the log (a mirror) verifies against the same checkpoints.
	if _, err := l.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS_COPY", Mirror: &jetstream.StreamSource{Name: "EVENTS"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, 30*time.Second, "the copy to catch up", func() error {
		s, err := l.JetStream().Stream(ctx, "EVENTS_COPY")
		if err != nil {
			return err
		}
		if got := s.CachedInfo().State.LastSeq; got < st.LastSeq {
			return fmt.Errorf("copy at %d of %d", got, st.LastSeq)
		}
		return nil
	})
	out, code = detbusCmd(t, "verify", "--nats", node.url, "--stream", "EVENTS_COPY", "--from-start", "--state", filepath.Join(t.TempDir(), "copy.json"), "--against", "EVENTS")
	if code != 1 || !strings.Contains(out, "stream EVENTS_COPY (a copy of EVENTS)") || !strings.Contains(out, fmt.Sprintf("forged checkpoint at position %d", forgedAt.Seq)) {
		t.Fatalf("verify the copy: exit %d\n%s", code, out)
	}
}
