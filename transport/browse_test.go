package transport_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestRangeAndSeek: Range returns an ESK's events from an index with
// their positions, headers and payloads; Seek finds the first event of an
// ESK at or after a stream position, with its index.
func TestRangeAndSeek(t *testing.T) {
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	ctx := ctxT(t)
	var mine, others []transport.Position
	for i := range 30 {
		pos, err := l.Write(ctx, "browse.me", []byte(fmt.Sprintf(`{"i":%d}`, i)), transport.WithHLC(), transport.WithHeader("X-Step", fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, pos)
		if i%3 == 0 {
			pos, err := l.Write(ctx, "browse.other", []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			others = append(others, pos)
		}
	}
	fresh := testnats.Log(t, s.ClientURL(), transport.Config{})
	evs, count, err := fresh.Range(ctx, "browse.me", 12, 10)
	if err != nil || count != 30 || len(evs) != 10 {
		t.Fatalf("Range(12, 10): %d events, count %d, %v", len(evs), count, err)
	}
	for k, ev := range evs {
		i := 12 + k
		if ev.Position() != mine[i] || string(ev.Data) != fmt.Sprintf(`{"i":%d}`, i) || ev.Header.Get("X-Step") != fmt.Sprint(i) || ev.Header.Get(transport.HeaderHLC) == "" {
			t.Fatalf("event %d: %+v, want %+v", i, ev, mine[i])
		}
	}
	if evs, count, err := fresh.Range(ctx, "browse.me", 25, 10); err != nil || count != 30 || len(evs) != 5 || evs[4].Position() != mine[29] {
		t.Fatalf("Range(25, 10): %d events, count %d, %v", len(evs), count, err)
	}
	if evs, count, err := fresh.Range(ctx, "browse.me", 30, 10); err != nil || count != 30 || len(evs) != 0 {
		t.Fatalf("Range(30, 10): %d events, count %d, %v", len(evs), count, err)
	}
	if evs, count, err := fresh.Range(ctx, "browse.none", 0, 10); err != nil || count != 0 || len(evs) != 0 {
		t.Fatalf("Range of an empty ESK: %d events, count %d, %v", len(evs), count, err)
	}
	if _, _, err := fresh.Range(ctx, "browse.me", 0, 0); !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("Range of 0 events: %v", err)
	}
	if _, _, err := fresh.Range(ctx, "browse.>", 0, 1); !errors.Is(err, transport.ErrInvalidESK) {
		t.Fatalf("Range of a pattern: %v", err)
	}

	// Seek: at an event of the ESK, between two of them, before the
	// first, after the last.
	for _, tc := range []struct {
		seq  uint64
		want transport.Position
	}{
		{mine[7].Seq, mine[7]},
		{others[4].Seq, mine[13]}, // others[4] follows mine[12]
		{0, mine[0]},
		{1, mine[0]},
	} {
		ev, err := testnats.Log(t, s.ClientURL(), transport.Config{}).Seek(ctx, "browse.me", tc.seq)
		if err != nil || ev.Position() != tc.want || string(ev.Data) != fmt.Sprintf(`{"i":%d}`, tc.want.Index) {
			t.Fatalf("Seek(%d) = %+v, %v; want %+v", tc.seq, ev.Position(), err, tc.want)
		}
	}
	if _, err := fresh.Seek(ctx, "browse.me", mine[29].Seq+1); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("Seek past the last event: %v", err)
	}
	if _, err := fresh.Seek(ctx, "browse.none", 1); !errors.Is(err, transport.ErrNotFound) {
		t.Fatalf("Seek on an empty ESK: %v", err)
	}
}
