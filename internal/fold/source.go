package fold

import (
	"context"
	"fmt"

	"github.com/detbus/detbus/transport"
)

// Source is one log a fold reads: events in the log's order, each with a
// sequence that grows along the log.
type Source interface {
	// Name names the source in messages; the sources of one fold have
	// distinct names.
	Name() string
	// Read calls apply with the source's events after sequence after, in
	// the log's order, in batches of one or more, and follows the log
	// until ctx is done; then it returns nil. It returns apply's error,
	// or the log's (wrapping transport.ErrUnavailable) when reading
	// fails; the fold then reads again after its cursor. apply may keep
	// the events, not the slice.
	Read(ctx context.Context, after uint64, apply func([]transport.Event) error) error
	// Last returns the sequence of the last event Read would deliver
	// that the log holds now (0 when there is none).
	Last(ctx context.Context) (uint64, error)
}

// LogSource is the source of the events of l whose ESKs match pattern
// (a literal ESK or a wildcard, as transport.ValidateESKPattern takes
// them). Its name is the stream's and the pattern's.
func LogSource(l *transport.Log, pattern string) Source {
	return &logSource{l: l, pattern: pattern, name: l.Config().Stream + ":" + pattern}
}

type logSource struct {
	l       *transport.Log
	pattern string
	name    string
}

var _ Source = (*logSource)(nil)

func (s *logSource) Name() string { return s.name }

func (s *logSource) Last(ctx context.Context) (uint64, error) {
	return s.l.LastSeq(ctx, s.pattern)
}

func (s *logSource) Read(ctx context.Context, after uint64, apply func([]transport.Event) error) error {
	for evs, err := range s.l.Batches(ctx, []string{s.pattern}, transport.ReadOptions{From: after + 1, Follow: true}) {
		if err != nil {
			return err
		}
		if err := apply(evs); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%w: the events of %s ended", transport.ErrUnavailable, s.pattern)
}
