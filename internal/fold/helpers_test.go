package fold_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// tally is a client of the fold for the tests: it sums the integer
// payloads of each ESK, rejects any other payload (keeping the newest
// keepRejected), and tells watchers the new sum of an ESK. It checks the
// fold's promises as it goes: each source's events come in increasing
// sequence, each once, one Apply at a time.
type tally struct {
	mu       sync.RWMutex
	sums     map[string]int64
	seq      []uint64 // the last sequence applied, per source
	applied  int      // events applied
	rejected fold.Rejections[uint64]
	watchers fold.Watchers[int64]
	errs     []string // broken promises
	inApply  bool
}

const keepRejected = 5

func newTally(sources int) *tally {
	return &tally{sums: map[string]int64{}, seq: make([]uint64, sources)}
}

// apply is the tally's Config.Apply. The outcome is the ESK's new sum,
// or -1 for a rejection.
func (c *tally) apply(src int, ev *transport.Event) int64 {
	if c.inApply {
		c.errs = append(c.errs, "two Apply calls at once")
	}
	c.inApply = true
	defer func() { c.inApply = false }()
	if ev.Seq <= c.seq[src] {
		c.errs = append(c.errs, fmt.Sprintf("source %d: seq %d after %d", src, ev.Seq, c.seq[src]))
	}
	c.seq[src] = ev.Seq
	c.applied++
	n, err := strconv.ParseInt(string(ev.Data), 10, 64)
	if err != nil {
		c.rejected.Add(ev.Seq, keepRejected)
		return -1
	}
	c.sums[ev.ESK] += n
	c.watchers.Notify(ev.ESK, c.sums[ev.ESK])
	return c.sums[ev.ESK]
}

// snapState is the tally's snapshot encoding.
type snapState struct {
	Seq      uint64           `json:"seq"`
	Applied  int              `json:"applied"`
	Sums     map[string]int64 `json:"sums"`
	Rejected uint64           `json:"rejected"`
	Kept     []uint64         `json:"kept"`
}

// encode is the tally's Config.Encode (one source).
func (c *tally) encode() ([]byte, uint64, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b, err := json.Marshal(snapState{Seq: c.seq[0], Applied: c.applied, Sums: c.sums, Rejected: c.rejected.Count(), Kept: c.rejected.List()})
	return b, c.seq[0], err
}

func decodeTally(data []byte) (*tally, uint64, error) {
	var s snapState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, 0, err
	}
	c := newTally(1)
	c.seq[0], c.applied = s.Seq, s.Applied
	if s.Sums != nil {
		c.sums = s.Sums
	}
	var err error
	if c.rejected, err = fold.NewRejections(s.Rejected, s.Kept, keepRejected); err != nil {
		return nil, 0, err
	}
	return c, s.Seq, nil
}

// state describes what the tally holds, for comparisons.
func (c *tally) state() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	keys := slices.Sorted(maps.Keys(c.sums))
	out := fmt.Sprintf("applied %d, rejected %d %v:", c.applied, c.rejected.Count(), c.rejected.List())
	for _, k := range keys {
		out += fmt.Sprintf(" %s=%d", k, c.sums[k])
	}
	return out
}

func (c *tally) check(t *testing.T) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.errs) > 0 {
		t.Fatalf("the fold broke its promises: %v", c.errs)
	}
}

// newFold returns a started fold of c over sources, closed at cleanup.
func newFold(t testing.TB, c *tally, cfg fold.Config[int64], at []uint64) *fold.Fold[int64] {
	t.Helper()
	cfg.Name, cfg.Mu, cfg.Apply = "test", &c.mu, c.apply
	f, err := fold.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Start(at)
	t.Cleanup(f.Close)
	return f
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// write appends payload to esk and returns its position.
func write(t testing.TB, l *transport.Log, esk, payload string) transport.Position {
	t.Helper()
	pos, err := l.Publish(ctxT(t), esk, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// failing is a source that fails its first reads, then reads as s.
type failing struct {
	fold.Source
	mu    sync.Mutex
	fails int
	reads []uint64 // where each read started
}

func (s *failing) Read(ctx context.Context, after uint64, apply func([]transport.Event) error) error {
	s.mu.Lock()
	s.reads = append(s.reads, after)
	fail := s.fails > 0
	s.fails--
	s.mu.Unlock()
	if fail {
		// Apply one event, then fail: the next read starts after it.
		stop := errors.New("stop")
		err := s.Source.Read(ctx, after, func(evs []transport.Event) error {
			if err := apply(evs[:1]); err != nil {
				return err
			}
			return stop
		})
		if errors.Is(err, stop) {
			return fmt.Errorf("%w: injected failure", transport.ErrUnavailable)
		}
		return err
	}
	return s.Source.Read(ctx, after, apply)
}

func node(t testing.TB) (url string, l *transport.Log) {
	url = testnats.Node(t).ClientURL()
	return url, testnats.Log(t, url, transport.Config{})
}
