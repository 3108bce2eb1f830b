package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ChainESK is the ESK of a log's chain checkpoints, under the reserved
// prefix: only admins (the node) may write it, raw or through the
// request service.
const ChainESK = Reserved + ".chain"

// Checkpoint is what a node appends on [ChainESK]: the claim that the
// chain of the log's stream at position Seq is Hash. It is stored as the
// JSON {"stream":"EVENTS","seq":1234,"hash":"<64 hex digits>","by":"n1"}.
type Checkpoint struct {
	// Stream is the stream whose chain it is: the log's own stream, the
	// same in every copy of the log.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Hash   Hash   `json:"hash"`
	// By names who wrote it (the node's name); informative only.
	By string `json:"by,omitempty"`
}

// Point returns the chain point the checkpoint claims.
func (c Checkpoint) Point() ChainPoint { return ChainPoint{Seq: c.Seq, Hash: c.Hash} }

// DecodeCheckpoint decodes a checkpoint event's payload. The error wraps
// [ErrMalformed] when it is not a JSON object with a stream, a seq and a
// hash of 64 hex digits.
func DecodeCheckpoint(data []byte) (Checkpoint, error) {
	var raw struct {
		Stream string  `json:"stream"`
		Seq    *uint64 `json:"seq"`
		Hash   *Hash   `json:"hash"`
		By     string  `json:"by"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: %v", ErrMalformed, err)
	}
	if raw.Stream == "" || raw.Seq == nil || raw.Hash == nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint needs a stream, a seq and a hash", ErrMalformed)
	}
	return Checkpoint{Stream: raw.Stream, Seq: *raw.Seq, Hash: *raw.Hash, By: raw.By}, nil
}

// ChainOrigin is the stream whose chain the log's stream holds: the
// stream itself, or for a JetStream mirror (a site's copy of another
// site's log) the mirrored stream. Checkpoints name it, and the input
// identity of a DET's outputs ([InputRef]) names it, so that a copy can
// be found for it anywhere.
func (l *Log) ChainOrigin() string {
	if m := l.stream.CachedInfo().Config.Mirror; m != nil && m.Name != "" {
		return m.Name
	}
	return l.cfg.Stream
}

// CheckpointConfig configures [Log.RunCheckpoints]. The zero value means
// every default.
type CheckpointConfig struct {
	// Every is how many events may follow the last checkpoint before the
	// next is written (default 10,000).
	Every uint64
	// Interval is how long an event may wait for a checkpoint that
	// covers it (default 10s).
	Interval time.Duration
	// By names the writer in its checkpoints (the node's name).
	By string
	// Logger receives warnings (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of [CheckpointConfig].
const (
	DefaultCheckpointEvery    = 10_000
	DefaultCheckpointInterval = 10 * time.Second
)

// RunCheckpoints appends checkpoints of the log's chain on [ChainESK]
// until ctx is done, then returns nil: one once Every events follow the
// last checkpoint, or once Interval has passed with events not covered
// (the checkpoints themselves do not count). Each covers the stream up
// to its last sequence when it is computed; the chain is extended from
// the last checkpoint, so a checkpoint costs reading the events since
// it.
//
// Several nodes may run it on one log: each checkpoint is a conditional
// append at the next index of [ChainESK], so one lands per round; a node
// that finds another's checks it against its own chain and goes on from
// it, and logs an error if the two disagree. Claims only advance: a
// checkpoint claims a position at or after the last checkpoint's own.
//
// On start it goes on from the newest checkpoint in the log, after
// checking it against the chain computed from the checkpoint before it
// (or from the start of the log): a checkpoint that does not check out
// is not built on, with a warning.
//
// The writer must be an admin: anyone else gets [ErrForbidden]. Errors
// from NATS are logged and retried at the next round.
func (l *Log) RunCheckpoints(ctx context.Context, cfg CheckpointConfig) error {
	if cfg.Every == 0 {
		cfg.Every = DefaultCheckpointEvery
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckpointInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := checkpointer{l: l, cfg: cfg, origin: l.ChainOrigin()}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := c.resume(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrForbidden) {
			return err
		}
		cfg.Logger.Warn("chain checkpoints: resuming", "stream", l.cfg.Stream, "err", err)
		if sleepCtx(ctx, backoff) != nil {
			return nil
		}
	}
	poll := min(max(cfg.Interval/4, 50*time.Millisecond), time.Second)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := c.round(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrForbidden) {
				return err
			}
			cfg.Logger.Warn("chain checkpoint not written", "stream", l.cfg.Stream, "err", err)
		}
	}
}

// checkpointer is the state of RunCheckpoints.
type checkpointer struct {
	l      *Log
	cfg    CheckpointConfig
	origin string
	last   ChainPoint // the chain as far as the last checkpoint (or this node's own computation)
	lastAt uint64     // where the last checkpoint is stored (0: none)
	next   uint64     // the index of the next checkpoint
	since  time.Time  // when the last checkpoint landed
}

// resume learns the newest checkpoint and checks it.
func (c *checkpointer) resume(ctx context.Context) error {
	l := c.l
	n, err := l.Count(ctx, ChainESK)
	if err != nil {
		return err
	}
	c.next, c.since = n, time.Now()
	if n == 0 {
		return nil
	}
	newest, at, err := c.read(ctx, n-1)
	if err != nil {
		c.cfg.Logger.Warn("chain checkpoints: the newest is not a checkpoint; going on from the chain computed anew", "stream", l.cfg.Stream, "index", n-1, "err", err)
		c.last, err = l.Chain(ctx, ChainPoint{}, 0)
		return err
	}
	var from ChainPoint
	if n > 1 {
		if prev, _, err := c.read(ctx, n-2); err == nil && prev.Seq <= newest.Seq {
			from = prev.Point()
		}
	}
	got, err := l.Chain(ctx, from, newest.Seq)
	if err != nil {
		return err
	}
	if got.Hash != newest.Hash && !from.Hash.IsZero() {
		if got, err = l.Chain(ctx, ChainPoint{}, newest.Seq); err != nil {
			return err
		}
	}
	if got.Hash != newest.Hash {
		c.cfg.Logger.Error("chain checkpoints: the newest checkpoint disagrees with the log; not building on it", "stream", l.cfg.Stream,
			"checkpoint_at", at, "claims_seq", newest.Seq, "claims", newest.Hash.String(), "computed", got.Hash.String())
	}
	c.last, c.lastAt = got, at
	return nil
}

// read returns the checkpoint at index i of ChainESK and where it is
// stored.
func (c *checkpointer) read(ctx context.Context, i uint64) (Checkpoint, uint64, error) {
	ev, err := c.l.Get(ctx, ChainESK, i)
	if err != nil {
		return Checkpoint{}, 0, err
	}
	cp, err := DecodeCheckpoint(ev.Data)
	if err == nil && cp.Stream != c.origin {
		err = fmt.Errorf("%w: checkpoint of stream %q in the log of %q", ErrMalformed, cp.Stream, c.origin)
	}
	return cp, ev.Seq, err
}

// round writes a checkpoint if one is due.
func (c *checkpointer) round(ctx context.Context) error {
	l := c.l
	head, err := l.head(ctx)
	if err != nil {
		return err
	}
	// Nothing new but the last checkpoint itself: nothing to cover.
	if head <= c.last.Seq || (head == c.lastAt && c.last.Seq+1 == c.lastAt) {
		return nil
	}
	if head-c.last.Seq < c.cfg.Every && time.Since(c.since) < c.cfg.Interval {
		return nil
	}
	p, err := l.Chain(ctx, c.last, head)
	if err != nil {
		return err
	}
	// Another node, or anyone else, may have written the next index
	// first: then check its checkpoint, and write this node's at the
	// index after it unless it covers as much.
	for range maxCheckpointTries {
		done, err := c.publish(ctx, p)
		if done || err != nil {
			return err
		}
		if head, err = l.head(ctx); err != nil {
			return err
		}
		if p, err = l.Chain(ctx, p, max(head, p.Seq)); err != nil {
			return err
		}
	}
	return nil
}

// maxCheckpointTries bounds the indices one round tries to write its
// checkpoint at.
const maxCheckpointTries = 8

// publish writes a checkpoint of p at the next index. When another
// checkpoint is there, it checks it against this node's chain and goes
// on from it if it agrees and covers at least as much (done); otherwise
// p is still to be written (not done).
func (c *checkpointer) publish(ctx context.Context, p ChainPoint) (done bool, err error) {
	l := c.l
	cp := Checkpoint{Stream: c.origin, Seq: p.Seq, Hash: p.Hash, By: c.cfg.By}
	data, _ := json.Marshal(cp)
	res, err := l.ExistsOrWrite(ctx, ChainESK, c.next, data)
	if err != nil {
		return false, err
	}
	c.next++
	if res.Outcome == Written {
		c.last, c.lastAt, c.since = p, res.Seq, time.Now()
		return true, nil
	}
	other, at, err := c.read(ctx, res.Index)
	c.lastAt = max(c.lastAt, at)
	if err != nil {
		c.cfg.Logger.Error("chain checkpoints: another writer's checkpoint is not one", "stream", l.cfg.Stream, "index", res.Index, "err", err)
		return false, nil
	}
	var mine ChainPoint
	switch {
	case other.Seq == p.Seq:
		mine = p
	case other.Seq > p.Seq:
		mine, err = l.Chain(ctx, p, other.Seq)
	case other.Seq >= c.last.Seq:
		mine, err = l.Chain(ctx, c.last, other.Seq)
	default:
		err = fmt.Errorf("%w: checkpoint #%d by %q claims position %d, behind the chain's %d", ErrMalformed, res.Index, other.By, other.Seq, c.last.Seq)
	}
	if err == nil && mine.Hash != other.Hash {
		err = fmt.Errorf("%w: checkpoint #%d by %q claims chain %s at position %d, this node computes %s", ErrChainMismatch, res.Index, other.By, other.Hash, other.Seq, mine.Hash)
	}
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return false, err
		}
		c.cfg.Logger.Error("chain checkpoints: another writer's checkpoint disagrees with this node's chain", "stream", l.cfg.Stream, "checkpoint_at", at, "err", err)
		return false, nil
	}
	if other.Seq < p.Seq {
		return false, nil
	}
	c.last, c.since = mine, time.Now()
	return true, nil
}
