package board_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// TestRacingInstances: two instances of the tally race over 20 moves, one
// of which it rejects. The board shows both with their inputs, won and
// lost outputs adding up to the outputs, the newest snapshot confirmed by
// both, the rejection, and a history of samples with each one's wins.
func TestRacingInstances(t *testing.T) {
	e := newEnv(t, nil)
	e.run("a", tally.Spec(), transform.Config{})
	e.run("b", tally.Spec(), transform.Config{})
	var last, refused transport.Position
	for i := range 20 {
		qty := 3
		if i == 7 {
			qty = -100 // more than in stock: rejected
		}
		last = e.move(fmt.Sprint("w", i%2), "bolt", qty)
		if i == 7 {
			refused = last
		}
	}
	// 19 outputs and a rejection record: each is won by one instance, lost
	// by the other.
	const outputs, written = 19, 20
	d := e.waitDET("tally", "every input settled by both, the last snapshot confirmed by both", func(d board.DET) error {
		if len(d.Instances) != 2 {
			return fmt.Errorf("%d instances", len(d.Instances))
		}
		var won uint64
		for _, in := range d.Instances {
			if in.InputSeq != last.Seq || in.Pending > 0 || in.Won+in.Lost != written {
				return fmt.Errorf("%s at input %d, %d pending, won %d, lost %d", in.Instance, in.InputSeq, in.Pending, in.Won, in.Lost)
			}
			won += in.Won
		}
		if won != written {
			return fmt.Errorf("%d won in all", won)
		}
		if s := d.Snapshot; s == nil || s.InputSeq != last.Seq || len(s.ConfirmedBy) != 2 {
			return fmt.Errorf("snapshot %+v", s)
		}
		return nil
	})
	if d.ID != "tally" || d.Name != "tally" || d.Generation != 1 || d.Output != "tally.levels" || d.State != transform.StateRunning ||
		d.Outputs != outputs || d.Lag != 0 || len(d.Divergences) != 0 {
		t.Fatalf("the DET: %+v", d)
	}
	for _, in := range d.Instances {
		if in.State != transform.StateRunning || in.Inputs != 20 || in.Lag != 0 || in.HeartbeatAge < 0 || in.Every != statusEvery {
			t.Fatalf("instance %+v", in)
		}
	}
	s := d.Snapshot
	if !s.Confirmed || s.Outputs != outputs || s.Rejections != 1 || s.Version != "1" || len(s.Hash) != 64 ||
		s.ClaimsESK != transform.ClaimsESK("tally.levels", last.Seq) || len(s.ContradictedBy) != 0 {
		t.Fatalf("snapshot %+v", s)
	}
	if got := slices.Sorted(slices.Values(s.ConfirmedBy)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("confirmed by %v", got)
	}
	for _, c := range s.Claims {
		if !c.Agrees || c.Hash != s.Hash {
			t.Fatalf("claim %+v of snapshot %s", c, s.Hash)
		}
	}
	r := d.Rejections
	if r.ESK != "tally.levels.rejected" || r.Count != 1 || len(r.Recent) != 1 {
		t.Fatalf("rejections %+v", r)
	}
	if got := r.Recent[0]; got.Input.ESK != refused.ESK || got.Input.Seq != refused.Seq || got.Input.Index != refused.Index ||
		!strings.Contains(got.Error, "100 asked") || got.Position.ESK != r.ESK || got.Position.Index != 0 {
		t.Fatalf("rejection %+v, want input %+v", got, refused)
	}
	if len(d.History) == 0 {
		t.Fatal("no history")
	}
	h := d.History[len(d.History)-1]
	if h.Outputs != outputs || h.Won["a"]+h.Won["b"] != written {
		t.Fatalf("last sample %+v", h)
	}
	for i := 1; i < len(d.History); i++ {
		if !d.History[i].Time.After(d.History[i-1].Time) || d.History[i].OutputsPerSecond < 0 {
			t.Fatalf("samples %d and %d: %+v, %+v", i-1, i, d.History[i-1], d.History[i])
		}
	}

	// The overview lists it, without the history.
	o := e.get("/api/transforms/dets").Want(t, http.StatusOK)
	if o.Str("stream") != transport.DefaultStream || o.Str("error") != "" || o.Str("polled") == "" {
		t.Fatalf("overview %s", o.Raw)
	}
	list := o.List("transforms")
	if len(list) != 1 || list[0]["id"] != "tally" || list[0]["history"] != nil || len(list[0]["instances"].([]any)) != 2 {
		t.Fatalf("overview lists %v", list)
	}
}

// TestDivergence: a non-deterministic instance of the tally, started beside
// a running one, computes another first output than the one that landed;
// the board shows the divergence with the output index, the input
// position and both hashes, and the instance stopped by it.
func TestDivergence(t *testing.T) {
	e := newEnv(t, nil)
	e.run("steady", tally.Spec(), transform.Config{})
	first := e.move("w1", "nut", 4)
	e.move("w1", "nut", 1)
	e.waitDET("tally", "two outputs", func(d board.DET) error {
		if d.Outputs != 2 {
			return fmt.Errorf("%d outputs", d.Outputs)
		}
		return nil
	})
	// Without snapshots the newcomer replays from the first input.
	e.run("noisy", noisySpec(), transform.Config{SnapshotEvery: -1})
	d := e.waitDET("tally", "a divergence", func(d board.DET) error {
		if len(d.Divergences) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	landed, err := e.log.Get(ctxT(t), "tally.levels", 0)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(landed.Data)
	dv := d.Divergences[0]
	if dv.What != "output" || dv.Instance != "noisy" || dv.Index != 0 || dv.InputESK != first.ESK || dv.InputSeq != first.Seq ||
		dv.FoundHash != hex.EncodeToString(sum[:]) || len(dv.OwnHash) != 64 || dv.OwnHash == dv.FoundHash {
		t.Fatalf("divergence %+v, landed sha256 %x, first input %+v", dv, sum, first)
	}
	d = e.waitDET("tally", "the noisy instance stopped", func(d board.DET) error {
		in, ok := instanceOf(d, "noisy")
		if !ok || in.State != transform.StateStopped {
			return fmt.Errorf("noisy: %+v", in)
		}
		return nil
	})
	in, _ := instanceOf(d, "noisy")
	steady, _ := instanceOf(d, "steady")
	if in.DivergenceCount != 1 || len(in.Divergences) != 0 || !strings.Contains(in.Stopped, "divergence") ||
		steady.State != transform.StateRunning || d.State != transform.StateRunning {
		t.Fatalf("instances %+v and %+v, DET %s", in, steady, d.State)
	}
}

// TestStaleAndGenerations: an instance whose heartbeat stopped is marked
// stale, and a later generation is a DET of its own, with its own output
// and rejections.
func TestStaleAndGenerations(t *testing.T) {
	e := newEnv(t, nil)
	e.run("g1", tally.Spec(), transform.Config{})
	e.run("g2", tally.Spec(), transform.Config{Generation: 2})
	e.move("w1", "pin", 2)
	e.move("w1", "pin", -3)
	// What a killed worker leaves: a status that stops being refreshed.
	sb, err := transform.OpenStatusBoard(ctxT(t), e.log)
	if err != nil {
		t.Fatal(err)
	}
	ghost := transform.Status{Stream: transport.DefaultStream, Name: "tally", Generation: 1, Output: "tally.levels", Instance: "ghost", Every: 10 * time.Millisecond}
	if err := sb.Publish(ctxT(t), ghost); err != nil {
		t.Fatal(err)
	}
	d := e.waitDET("tally", "the ghost stale", func(d board.DET) error {
		in, ok := instanceOf(d, "ghost")
		if !ok || in.State != transform.StateStale || in.HeartbeatAge < 3 {
			return fmt.Errorf("ghost: %+v", in)
		}
		return nil
	})
	if d.State != transform.StateRunning || d.Lag != 0 {
		t.Fatalf("the DET with a stale instance: %s, lag %d", d.State, d.Lag)
	}
	g2 := e.waitDET("tally.g2", "one output and one rejection", func(d board.DET) error {
		if d.Outputs != 1 || d.Rejections.Count != 1 {
			return fmt.Errorf("%d outputs, %d rejections", d.Outputs, d.Rejections.Count)
		}
		return nil
	})
	if g2.Generation != 2 || g2.Output != "tally.levels.g2" || g2.Rejections.ESK != "tally.levels.g2.rejected" || len(g2.Instances) != 1 {
		t.Fatalf("generation 2: %+v", g2)
	}
}

// TestErrors: unknown DETs and methods get JSON errors, and options are
// checked.
func TestErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.get("/api/transforms/dets/nope").Want(t, http.StatusNotFound, `no transform \"nope\"`)
	apitest.Do(t, e.api, "POST", "/api/transforms/dets", "").Want(t, http.StatusMethodNotAllowed, "GET")
	e.get("/api/transforms/dets/a/b").Want(t, http.StatusNotFound)
	if _, err := board.New(nil, board.Options{}); !errors.Is(err, board.ErrInvalidOption) {
		t.Fatalf("nil log: %v", err)
	}
	if _, err := board.New(e.log, board.Options{Poll: -1, MaxSamples: -1}); !errors.Is(err, board.ErrInvalidOption) ||
		!strings.Contains(err.Error(), "Poll") || !strings.Contains(err.Error(), "MaxSamples") {
		t.Fatalf("negative options: %v", err)
	}
}
