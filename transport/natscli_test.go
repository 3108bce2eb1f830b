package transport_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestNatsCLIInterleaved mixes events published by the nats CLI, which
// carries none of the SDK's headers, with SDK writes on one ESK: the CLI
// events take their places in the per-ESK order like any other.
func TestNatsCLIInterleaved(t *testing.T) {
	cli := testnats.NatsCLI(t)
	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	ctx := ctxT(t)
	const esk = "mixed.k"
	subject := "events." + esk

	type want struct {
		payload string
		cli     bool
		header  string // the X-Test header, if any
	}
	var wants []want
	payload := func(src string) string { return fmt.Sprintf(`{"src":%q,"n":%d}`, src, len(wants)) }

	sdkWrite := func() {
		t.Helper()
		p := payload("sdk")
		pos, err := l.Write(ctx, esk, []byte(p), transport.WithHLC())
		if err != nil {
			t.Fatalf("write %d: %v", len(wants), err)
		}
		if pos.Index != uint64(len(wants)) || pos.ESK != esk {
			t.Fatalf("write %s landed at %+v, want index %d", p, pos, len(wants))
		}
		wants = append(wants, want{payload: p})
	}
	sdkAppend := func() {
		t.Helper()
		p := payload("sdk")
		idx := uint64(len(wants))
		r, err := l.ExistsOrWrite(ctx, esk, idx, []byte(p), transport.WithHLC())
		if err != nil {
			t.Fatalf("append at %d: %v", idx, err)
		}
		if r.Outcome != transport.Written || !r.Equal || r.Index != idx || r.ESK != esk {
			t.Fatalf("append %s at %d: %+v", p, idx, r)
		}
		wants = append(wants, want{payload: p})
	}
	cliPub := func(headers ...string) {
		t.Helper()
		p := payload("cli")
		testnats.NatsPub(t, ctx, cli, url, subject, p, true, headers...)
		w := want{payload: p, cli: true}
		if len(headers) > 0 {
			w.header = "yes"
		}
		wants = append(wants, w)
	}

	sdkWrite()           // 0
	cliPub()             // 1
	sdkAppend()          // 2
	cliPub()             // 3
	cliPub("X-Test:yes") // 4
	sdkWrite()           // 5
	cliPub()             // 6
	sdkAppend()          // 7: the Log has not seen 6 yet
	cliPub("X-Test:yes") // 8
	sdkWrite()           // 9
	const total = 10

	if n, err := l.Count(ctx, esk); err != nil || n != total {
		t.Fatalf("count = %d, %v; want %d", n, err, total)
	}

	check := func(who string, ev transport.Event, i int) {
		t.Helper()
		w := wants[i]
		if ev.ESK != esk || ev.Index != uint64(i) || string(ev.Data) != w.payload {
			t.Fatalf("%s: event %d = {ESK:%q Index:%d Data:%s}, want %s", who, i, ev.ESK, ev.Index, ev.Data, w.payload)
		}
		if ev.Time.IsZero() || ev.Stored.IsZero() || ev.Seq == 0 {
			t.Fatalf("%s: event %d has time %v, stored %v, seq %d", who, i, ev.Time, ev.Stored, ev.Seq)
		}
		if hlcHdr := ev.Header.Get(transport.HeaderHLC); w.cli != (hlcHdr == "") {
			t.Fatalf("%s: event %d (cli=%v) has %s header %q", who, i, w.cli, transport.HeaderHLC, hlcHdr)
		}
		if w.cli {
			if ev.Header.Get(transport.HeaderWriteID) != "" {
				t.Fatalf("%s: CLI event %d has detbus headers %v", who, i, ev.Header)
			}
		}
		if got := ev.Header.Get("X-Test"); got != w.header {
			t.Fatalf("%s: event %d header X-Test = %q, want %q", who, i, got, w.header)
		}
		var v struct {
			Src string `json:"src"`
			N   int    `json:"n"`
		}
		if err := ev.Decode(&v); err != nil || v.N != i {
			t.Fatalf("%s: decode event %d: %+v, %v", who, i, v, err)
		}
	}
	for i := range total {
		ev, err := l.Get(ctx, esk, uint64(i))
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		check("get", ev, i)
	}
	if _, err := l.Get(ctx, esk, total); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("get %d: %v, want ErrNotFound", total, err)
	}

	i := 0
	for ev, err := range l.Events(ctx, []string{esk}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if i >= total {
			t.Fatalf("events: extra event %+v", ev)
		}
		check("events", ev, i)
		i++
	}
	if i != total {
		t.Fatalf("events yielded %d events, want %d", i, total)
	}

	// A Log on a new connection learns the indices from scratch, backwards
	// to make it walk the whole subject at once.
	fresh := testnats.Log(t, url, transport.Config{})
	for i := total - 1; i >= 0; i-- {
		ev, err := fresh.Get(ctx, esk, uint64(i))
		if err != nil {
			t.Fatalf("fresh log get %d: %v", i, err)
		}
		check("fresh get", ev, i)
	}

	// Conditional appends at indices the CLI took: another payload is
	// Present and not equal; the same JSON bytes are Present and equal
	// (no content type header means JSON on both sides).
	r, err := fresh.ExistsOrWrite(ctx, esk, 8, []byte(`{"src":"sdk","n":8}`))
	if err != nil || r.Outcome != transport.Present || r.Equal || r.Index != 8 {
		t.Fatalf("append over CLI event 8: %+v, %v; want Present, not equal", r, err)
	}
	r, err = l.ExistsOrWrite(ctx, esk, 6, []byte(wants[6].payload))
	if err != nil || r.Outcome != transport.Present || !r.Equal || r.Index != 6 {
		t.Fatalf("append of CLI event 6's payload at 6: %+v, %v; want Present, equal", r, err)
	}

	// Invalid JSON from the CLI is stored like any bytes; decoding it fails.
	const bad = `{"src":"cli",`
	testnats.NatsPub(t, ctx, cli, url, subject, bad, true)
	ev, err := fresh.Get(ctx, esk, total)
	if err != nil {
		t.Fatalf("get the invalid JSON event: %v", err)
	}
	if string(ev.Data) != bad || ev.Index != total {
		t.Fatalf("invalid JSON event = {Index:%d Data:%s}, want %s at %d", ev.Index, ev.Data, bad, total)
	}
	if err := ev.Decode(&struct{}{}); !errors.Is(err, transport.ErrMalformed) {
		t.Fatalf("decode invalid JSON: %v, want ErrMalformed", err)
	}
	if n, err := l.Count(ctx, esk); err != nil || n != total+1 {
		t.Fatalf("count after invalid JSON = %d, %v; want %d", n, err, total+1)
	}
}
