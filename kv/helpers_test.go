package kv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// node starts an embedded server and opens a log on it.
func node(t testing.TB) (*transport.Server, *transport.Log) {
	t.Helper()
	srv := testnats.Node(t)
	return srv, testnats.Log(t, srv.ClientURL(), transport.Config{})
}

// open opens a store on l, closed at cleanup. Snapshots are off unless
// opts asks for them.
func open(t testing.TB, l *transport.Log, opts Options) *Store {
	t.Helper()
	if opts.SnapshotEvery == 0 && opts.SnapshotInterval == 0 {
		opts.SnapshotEvery, opts.SnapshotInterval = -1, -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, l, opts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// must fails the test on a write error and returns the position.
func must(t testing.TB) func(transport.Position, error) transport.Position {
	return func(p transport.Position, err error) transport.Position {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// expectErr fails unless err wraps every target.
func expectErr(t testing.TB, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("error %q does not wrap %v", err, target)
		}
	}
}

// getValue returns the JSON value of a key, failing the test on error.
func getValue(t testing.TB, s *Store, table, key string) string {
	t.Helper()
	v, err := s.Get(table, key)
	if err != nil {
		t.Fatalf("get %s/%s: %v", table, key, err)
	}
	return string(v.Value)
}

// dump returns a store's deterministic state.
func dump(t testing.TB, s *Store) string {
	t.Helper()
	b, _, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newTestLogger logs text to w.
func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
