package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// build builds this program, as a user would.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tally-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestWorkerProgram: the user's program, built with worker.Main, runs as
// two racing worker processes: with the flags of detbus worker, its
// instances on the status board, its outputs those of the DET applied
// offline; one killed, the other goes on; SIGTERM stops it with status 0
// and a summary; a mistake in its arguments exits 2.
func TestWorkerProgram(t *testing.T) {
	bin := build(t)
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := context.Background()
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			qty := int64(i%7 + 1)
			if i%5 == 4 {
				qty = -3 * qty
			}
			if _, err := l.Write(ctx, fmt.Sprintf("tally.moves.w%d", i%2), []byte(fmt.Sprintf(`{"item":"i%d","qty":%d}`, i%3, qty))); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 60)
	var outs [2]*testnats.SyncBuffer
	var cmds [2]*exec.Cmd
	for i := range cmds {
		outs[i] = &testnats.SyncBuffer{}
		cmds[i] = exec.Command(bin, "--nats", url, "--instance", fmt.Sprint("t", i), "--status-every", "100ms", "--snapshot-every", "20")
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmds[i].Process.Kill()
			_ = cmds[i].Wait()
			if t.Failed() {
				t.Logf("instance %d:\n%s", i, outs[i].String())
			}
		})
	}
	// The reference: the DET applied offline to the moves in log order.
	reference := func() (outputs, rejected int) {
		d := tally.New()
		for ev, err := range l.Events(ctx, []string{"tally.moves.*"}, transport.ReadOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Data: ev.Data}
			o, err := d.Step(transform.NewContext(in), in)
			if err != nil {
				rejected++
			}
			outputs += len(o)
		}
		return outputs, rejected
	}
	waitFor := func(esk string, n int) {
		testnats.WaitFor(t, time.Minute, fmt.Sprintf("%d events on %s", n, esk), func() error {
			c, err := l.Count(ctx, esk)
			if err != nil || c < uint64(n) {
				return fmt.Errorf("%d, %v", c, err)
			}
			return nil
		})
	}
	want, rejected := reference()
	waitFor("tally.levels", want)
	waitFor("tally.levels.rejected", rejected)
	board, ok, err := transform.BindStatusBoard(ctx, l)
	if err != nil || !ok {
		t.Fatalf("no status board: %v", err)
	}
	testnats.WaitFor(t, 30*time.Second, "both instances on the board", func() error {
		list, err := board.List(ctx, transport.DefaultStream)
		if err != nil || len(list) != 2 || list[0].Won+list[1].Won != uint64(want+rejected) {
			return fmt.Errorf("%+v %v", list, err)
		}
		return nil
	})

	// One is killed; the other goes on alone.
	_ = cmds[0].Process.Kill()
	write(60, 30)
	want, rejected = reference()
	waitFor("tally.levels", want)
	waitFor("tally.levels.rejected", rejected)
	d := tally.New()
	var got []string
	for ev, err := range l.Events(ctx, []string{"tally.moves.*"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		in := transform.Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Data: ev.Data}
		o, _ := d.Step(transform.NewContext(in), in)
		for _, b := range o {
			got = append(got, string(b))
		}
	}
	i := 0
	for ev, err := range l.Events(ctx, []string{"tally.levels"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Data) != got[i] {
			t.Fatalf("output %d: %s, want %s", i, ev.Data, got[i])
		}
		i++
	}

	// SIGTERM: a clean stop, with the summary.
	if err := cmds[1].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmds[1].Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, outs[1].String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if !strings.Contains(outs[1].String(), "tally/t1: ") || !strings.Contains(outs[1].String(), "0 divergences") {
		t.Fatalf("no summary:\n%s", outs[1].String())
	}

	// Usage: -h lists the transform and the flags; a mistake exits 2.
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "transforms: tally") || !strings.Contains(string(out), "-nats") {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"--snapshot-every", "x"}, {"nosuch"}, {"--on-divergence", "panic", "--nats", url}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%v: %v, want exit status 2\n%s", args, err, out)
		}
	}
}
