package testnats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/transport"
)

// WaitCovered waits until the newest checkpoint of l's hash chain
// covers position seq.
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
		if err != nil || cp.Seq < seq {
			return fmt.Errorf("the newest covers %d (%v)", cp.Seq, err)
		}
		return nil
	})
}
