package transform_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// gateDET is sumDET whose steps wait for the gate to open.
type gateDET struct {
	*sumDET
	gate chan struct{}
}

func (g *gateDET) Step(ctx *transform.Context, in transform.Input) ([][]byte, error) {
	<-g.gate
	return g.sumDET.Step(ctx, in)
}

// TestLagCountsOwnInputs: the lag is measured against the newest of the
// DET's own inputs: writes to other ESKs leave a caught-up DET at lag 0,
// inputs it has not applied yet count.
func TestLagCountsOwnInputs(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	last := writeInputs(t, l, 0, 10)
	gate := make(chan struct{})
	spec := sumSpec("lag", "lag.out")
	spec.New = func() transform.Transform { return &gateDET{sumDET: &sumDET{Totals: map[string]int64{}}, gate: gate} }
	board, err := transform.OpenStatusBoard(ctxT(t), l)
	if err != nil {
		t.Fatal(err)
	}
	in := start(t, url, transform.Config{Spec: spec, Instance: "one", StatusInterval: 20 * time.Millisecond, Board: board})
	// Closed gate: the first input waits in Step, the rest count as lag.
	testnats.WaitFor(t, 10*time.Second, "lag of the inputs not applied", func() error {
		if st := in.r.Status(); st.Lag < last-1 {
			return fmt.Errorf("lag %d, input seq %d", st.Lag, st.InputSeq)
		}
		return nil
	})
	close(gate)
	settled(t, in, last)
	for i := range 50 {
		if _, err := l.Write(ctxT(t), fmt.Sprint("noise.", i%5), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	noise := time.Now()
	// A status published well after the noise was computed after it: its
	// lag is 0 (the stream's head is 50 past the last input).
	testnats.WaitFor(t, 10*time.Second, "a status published after the noise", func() error {
		list, err := board.List(ctxT(t), "")
		if err != nil || len(list) != 1 || !list[0].Updated.After(noise.Add(200*time.Millisecond)) {
			return fmt.Errorf("%+v %v", list, err)
		}
		if list[0].Lag != 0 {
			t.Fatalf("lag %d after writes to other ESKs only (input seq %d)", list[0].Lag, list[0].InputSeq)
		}
		return nil
	})
}

// TestStatusBoardByStream: the same DET and instance names on two streams
// are two statuses; each stream lists its own.
func TestStatusBoardByStream(t *testing.T) {
	s := testnats.Node(t)
	url := s.ClientURL()
	ctx := ctxT(t)
	var boards []*transform.StatusBoard
	for i, cfg := range []transport.Config{{}, {Stream: "EV2", Prefix: "ev2"}} {
		l := testnats.Log(t, url, cfg)
		writeInputs(t, l, 0, 5*(i+1))
		board, err := transform.OpenStatusBoard(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		boards = append(boards, board)
		in := startWith(t, transform.Config{Spec: sumSpec("same", "same.out"), Instance: "one", Log: l, Board: board, StatusInterval: 20 * time.Millisecond})
		want, _ := expected(5 * (i + 1))
		waitOutputs(t, l, "same.out", want)
		in.halt(t)
	}
	for i, stream := range []string{transport.DefaultStream, "EV2"} {
		list, err := boards[0].List(ctx, stream)
		if err != nil || len(list) != 1 || list[0].Stream != stream || list[0].Inputs != uint64(5*(i+1)) {
			t.Fatalf("stream %s: %+v %v", stream, list, err)
		}
	}
	if all, err := boards[1].List(context.Background(), ""); err != nil || len(all) != 2 {
		t.Fatalf("every stream: %+v %v", all, err)
	}
}

// TestStale: a running status whose heartbeat is three intervals old is
// stale; a stopped one never is.
func TestStale(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		s    transform.Status
		want bool
	}{
		{transform.Status{Updated: now.Add(-time.Second), Every: 2 * time.Second}, false},
		{transform.Status{Updated: now.Add(-7 * time.Second), Every: 2 * time.Second}, true},
		{transform.Status{Updated: now.Add(-7 * time.Second), Every: 2 * time.Second, Stopped: "stopped"}, false},
		{transform.Status{Updated: now.Add(-2 * time.Second), Every: 100 * time.Millisecond}, false}, // at least a second apart
		{transform.Status{Updated: now.Add(-4 * time.Second), Every: 100 * time.Millisecond}, true},
	} {
		if got := c.s.Stale(now); got != c.want {
			t.Errorf("%+v: stale %v, want %v", c.s, got, c.want)
		}
	}
}
