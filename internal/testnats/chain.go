package testnats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/transport"
)

// WaitCovered waits until the newest checkpoint of l's hash chain
// covers every event up to position seq but checkpoints themselves (a
// node does not checkpoint a log that only grew by its own checkpoint).
func WaitCovered(t testing.TB, l *transport.Log, seq uint64) {
	t.Helper()
	WaitFor(t, 60*time.Second, fmt.Sprintf("a checkpoint covering position %d", seq), func() error {
		ctx := context.Background()
		n, err := l.Count(ctx, transport.ChainESK)
		if err != nil || n == 0 {
			return fmt.Errorf("%d checkpoints (%v)", n, err)
		}
		ev, err := l.Get(ctx, transport.ChainESK, n-1)
		if err != nil {
			return err
		}
		cp, err := transport.DecodeCheckpoint(ev.Data)
		if err != nil {
			return err
		}
		if cp.Seq >= seq {
			return nil
		}
		// Up to seq, only checkpoints after the position it covers?
		after := uint64(0)
		for c, err := range l.Events(ctx, []string{transport.ChainESK}, transport.ReadOptions{From: cp.Seq + 1}) {
			if err != nil {
				return err
			}
			if c.Seq <= seq {
				after++
			}
		}
		if after < seq-cp.Seq {
			return fmt.Errorf("the newest covers %d", cp.Seq)
		}
		return nil
	})
}
