package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestScaleChain computes the chain of the long log (2,000,000 events)
// from its start, beside a raw read of the same messages in the same run
// (batched direct gets, no hashing, one after the other as the chain
// reads them), verifies it against a checkpoint, and then, with a
// thousand events and a checkpoint more, verifies again from the
// checkpoint confirmed: that verification reads only what follows it.
// The rates are logged for the README; nothing here asserts a time.
func TestScaleChain(t *testing.T) {
	ll := longLog(t)
	ctx := context.Background()
	url := ll.Server.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	st, err := l.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	raw := rawRead(t, url, transport.DefaultStream, st.LastSeq)
	rawTook := time.Since(began)
	if raw != st.Messages {
		t.Fatalf("the raw read got %d messages of %d", raw, st.Messages)
	}
	began = time.Now()
	p, err := l.Chain(ctx, transport.ChainPoint{}, st.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	chainTook := time.Since(began)
	rate := func(n uint64, d time.Duration) float64 { return float64(n) / d.Seconds() }
	t.Logf("chain over %d events: %v (%.0f events/s); raw batched direct gets of the same: %v (%.0f events/s); chain/raw rate %.2f",
		st.Messages, chainTook.Round(time.Millisecond), rate(st.Messages, chainTook), rawTook.Round(time.Millisecond), rate(raw, rawTook),
		rate(st.Messages, chainTook)/rate(raw, rawTook))

	checkpoint := func(p transport.ChainPoint) {
		t.Helper()
		data, _ := json.Marshal(transport.Checkpoint{Stream: transport.DefaultStream, Seq: p.Seq, Hash: p.Hash, By: "scale"})
		if _, err := l.Write(ctx, transport.ChainESK, data); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint(p)
	began = time.Now()
	rep, err := l.VerifyChain(ctx, transport.VerifyOptions{})
	if err != nil || rep.Confirmed != 1 || rep.Resume == nil || rep.Resume.Seq != p.Seq {
		t.Fatalf("verify from the start: %+v, %v", rep, err)
	}
	t.Logf("verify from the start: %d events in %v", rep.Events, time.Since(began).Round(time.Millisecond))

	// A thousand more events and a checkpoint, extending the chain from
	// the last: then a verification that resumes.
	err = testnats.Publish(ctx, url, 1000, func(i int) (string, []byte) {
		return l.Subject("chainscale.more"), fmt.Appendf(nil, `{"i":%d}`, i)
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, err = l.Chain(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	checkpoint(p)
	before := l.ReadStats()
	began = time.Now()
	again, err := l.VerifyChain(ctx, transport.VerifyOptions{From: rep.Resume})
	took := time.Since(began)
	if err != nil || again.Confirmed != 2 || again.Resume.Seq != p.Seq {
		t.Fatalf("verify from the checkpoint: %+v, %v", again, err)
	}
	read := l.ReadStats().DirectMsgs - before.DirectMsgs
	if again.Events > 1003 || read > 2*again.Events {
		t.Fatalf("the resumed verification hashed %d events and read %d messages, for the 1,002 after the checkpoint", again.Events, read)
	}
	t.Logf("verify resumed from the checkpoint at position %d: %d events, %d messages read, %v", rep.Resume.At, again.Events, read, took.Round(time.Microsecond))
}

// rawRead reads every message of stream up to position to with batched
// direct gets of a plain NATS client, as fast as one request after the
// other goes, and returns how many it read.
func rawRead(t *testing.T, url, stream string, to uint64) uint64 {
	t.Helper()
	nc := testnats.Conn(t, url)
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for next := uint64(1); next <= to; {
		req := fmt.Sprintf(`{"seq":%d,"batch":1000,"max_bytes":8388608}`, next)
		if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, []byte(req)); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("raw read at %d: %v", next, err)
			}
			if m.Header.Get("Status") != "" {
				break
			}
			seq, _ := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
			if seq <= to {
				n++
			}
			next = seq + 1
		}
	}
	return n
}
