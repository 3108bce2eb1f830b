package transport_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// names lists the ESKs of a page.
func names(p transport.ESKPage) []string {
	out := []string{}
	for _, e := range p.ESKs {
		out = append(out, e.ESK)
	}
	return out
}

// TestDirectory: a directory lists ESKs in byte order, by prefix and page
// by page, each with its count and last event, and sees an ESK written
// after its first listing.
func TestDirectory(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	counts := map[string]int{"orders.eu": 3, "orders.es.madrid": 2, "orders.us": 1, "a": 4, "x.y": 1, "orders": 2}
	last := map[string]transport.Position{}
	for round := range 4 {
		for _, esk := range []string{"orders.eu", "orders.es.madrid", "orders.us", "a", "x.y", "orders"} {
			if round < counts[esk] {
				pos, err := l.Write(ctx, esk, []byte(fmt.Sprintf(`{"round":%d}`, round)))
				if err != nil {
					t.Fatal(err)
				}
				last[esk] = pos
			}
		}
	}
	d := transport.NewDirectory(l)
	page, err := d.List(ctx, transport.ESKQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(page)); got != "[a orders orders.es.madrid orders.eu orders.us x.y]" || page.Total != 6 || page.More || page.AllESKs != 6 || page.Events != 13 {
		t.Fatalf("all: %s, total %d, more %v, %d ESKs, %d events", got, page.Total, page.More, page.AllESKs, page.Events)
	}
	for _, e := range page.ESKs {
		if e.Count != uint64(counts[e.ESK]) || e.LastSeq != last[e.ESK].Seq || time.Since(e.LastTime) > time.Minute {
			t.Fatalf("%s: %+v, want count %d, last seq %d", e.ESK, e, counts[e.ESK], last[e.ESK].Seq)
		}
	}
	for _, tc := range []struct {
		q     transport.ESKQuery
		want  string
		total int
		more  bool
	}{
		{transport.ESKQuery{Prefix: "orders.e"}, "[orders.es.madrid orders.eu]", 2, false},
		{transport.ESKQuery{Prefix: "orders"}, "[orders orders.es.madrid orders.eu orders.us]", 4, false},
		{transport.ESKQuery{Prefix: "orders."}, "[orders.es.madrid orders.eu orders.us]", 3, false},
		{transport.ESKQuery{Prefix: "orders", Limit: 2}, "[orders orders.es.madrid]", 4, true},
		{transport.ESKQuery{Prefix: "orders", After: "orders.es.madrid", Limit: 2}, "[orders.eu orders.us]", 4, false},
		{transport.ESKQuery{After: "orders.us"}, "[x.y]", 6, false},
		{transport.ESKQuery{After: "b", Limit: 1}, "[orders]", 6, true},
		{transport.ESKQuery{Prefix: "orders", After: "a"}, "[orders orders.es.madrid orders.eu orders.us]", 4, false},
		{transport.ESKQuery{Prefix: "orders", After: "z"}, "[]", 4, false},
		{transport.ESKQuery{Prefix: "nothing"}, "[]", 0, false},
	} {
		p, err := d.List(ctx, tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		if got := fmt.Sprint(names(p)); got != tc.want || p.Total != tc.total || p.More != tc.more {
			t.Errorf("%+v: %s total %d more %v, want %s total %d more %v", tc.q, got, p.Total, p.More, tc.want, tc.total, tc.more)
		}
	}
	// A new ESK is listed at the next call.
	if _, err := l.Write(ctx, "orders.fr", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	p, err := d.List(ctx, transport.ESKQuery{Prefix: "orders.", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(p)); got != "[orders.es.madrid orders.eu orders.fr]" || p.Total != 4 || !p.More {
		t.Fatalf("after a new ESK: %s total %d more %v", got, p.Total, p.More)
	}
	// A name that JSON escapes.
	if _, err := l.Write(ctx, `we"ird\esk`, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if p, err := d.List(ctx, transport.ESKQuery{Prefix: `we"`}); err != nil || fmt.Sprint(names(p)) != `[we"ird\esk]` {
		t.Fatalf("an escaped name: %v, %v", names(p), err)
	}
	// Bad queries say what is wrong.
	for q, want := range map[transport.ESKQuery]string{
		{Limit: -1}:                         "limit -1",
		{Limit: transport.MaxESKPage + 1}:   "limit 1001",
		{Prefix: "orders.*"}:                "wildcard",
		{Prefix: "a b"}:                     "byte 0x20",
		{After: "é"}:                        "byte 0xc3",
		{Prefix: string(make([]byte, 201))}: "201 bytes",
	} {
		if _, err := d.List(ctx, q); !errors.Is(err, transport.ErrInvalidOption) || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want ErrInvalidOption naming %q", q, err, want)
		}
	}
}

// TestDirectoryLastEvents: the last events of a page come back even when
// their payloads fill more than one reply.
func TestDirectoryLastEvents(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	big := make([]byte, 900<<10)
	want := map[string]uint64{}
	for i := range 12 {
		esk := fmt.Sprintf("big.%02d", i)
		pos, err := l.Write(ctx, esk, big)
		if err != nil {
			t.Fatal(err)
		}
		want[esk] = pos.Seq
	}
	p, err := transport.NewDirectory(l).List(ctx, transport.ESKQuery{Prefix: "big."})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ESKs) != 12 {
		t.Fatalf("%d ESKs listed", len(p.ESKs))
	}
	for _, e := range p.ESKs {
		if e.LastSeq != want[e.ESK] || e.Count != 1 {
			t.Fatalf("%+v, want last seq %d", e, want[e.ESK])
		}
	}
}
