package transform

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/detbus/detbus/transport"
)

// Group commit. The run loop steps inputs and hands each output, with its
// index, to the committer, which appends them in order in another
// goroutine: while one append is in flight the loop goes on stepping, and
// the outputs that pile up meanwhile go out together as one atomic batch
// (transport.Log.AppendBatch: all or none, at the ESK's count). A batch
// costs the server about 2 ms whatever its size, so the committer batches
// only when enough outputs wait (batchMin), and appends fewer one by one
// with conditional appends (about 0.1 ms each): an idle DET pays a single
// round trip per output, a loaded one amortises.
//
// Racing stays exact: a batch that loses lands nothing, and the instance
// then compares the outputs that landed with its own, index by index, by
// hash, as it does for a single output.

// Bounds of a batch.
const (
	batchMin      = 16                     // fewer waiting outputs go out one by one
	batchMaxBytes = 8 << 20                // payload bytes in one batch
	commitQueue   = 4 * transport.MaxBatch // outputs stepped ahead of the commits
)

// pendingOutput is an output stepped but not yet settled (written, or
// compared with the one that landed), or a flush marker.
type pendingOutput struct {
	esk     string
	k       uint64
	payload []byte
	in      Input
	ctx     context.Context // the step's, for traces
	ready   time.Time       // when it was stepped
	flushed chan struct{}   // a flush marker: closed once everything before it settled
}

// committer settles the outputs of a run in order.
type committer struct {
	r     *Runner
	queue chan pendingOutput
	held  *pendingOutput // taken from the queue but not settled yet
	lag   time.Duration  // the winner's usual lag behind this instance, for deference

	done chan struct{} // closed when the committer ends
	err  error         // why it ended, nil if ctx did; set before done closes
}

// startCommitter starts settling outputs until ctx is done; an error
// that stops the committer cancels the run through cancel.
func (r *Runner) startCommitter(ctx context.Context, cancel context.CancelFunc) *committer {
	c := &committer{r: r, queue: make(chan pendingOutput, commitQueue), done: make(chan struct{})}
	go func() {
		err := c.run(ctx)
		if ctx.Err() != nil && !errors.Is(err, ErrDivergence) {
			err = nil // the run stopped it
		}
		c.err = err
		close(c.done)
		if c.err != nil {
			cancel()
		}
	}()
	return c
}

// failure is the error that ended the committer, or nil if it runs or
// ended with its context.
func (c *committer) failure() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// add hands an output to the committer, waiting while it is commitQueue
// outputs behind.
func (c *committer) add(ctx context.Context, p pendingOutput) error {
	select {
	case c.queue <- p:
		return nil
	case <-c.done:
		return c.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush waits until every output handed over so far has settled.
func (c *committer) flush(ctx context.Context) error {
	marker := pendingOutput{flushed: make(chan struct{})}
	if err := c.add(ctx, marker); err != nil {
		return err
	}
	select {
	case <-marker.flushed:
		return nil
	case <-c.done:
		return c.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *committer) stopped() error {
	if c.err == nil {
		return errors.New("transform: the committer stopped")
	}
	return c.err
}

// next returns the next pending output, waiting for one.
func (c *committer) next(ctx context.Context) (pendingOutput, bool) {
	if p := c.held; p != nil {
		c.held = nil
		return *p, true
	}
	select {
	case p := <-c.queue:
		return p, true
	case <-ctx.Done():
		return pendingOutput{}, false
	}
}

// peek returns the next pending output if one is waiting, without taking
// it.
func (c *committer) peek() (pendingOutput, bool) {
	if c.held != nil {
		return *c.held, true
	}
	select {
	case p := <-c.queue:
		c.held = &p
		return p, true
	default:
		return pendingOutput{}, false
	}
}

func (c *committer) run(ctx context.Context) error {
	r := c.r
	for {
		p, ok := c.next(ctx)
		if !ok {
			return nil
		}
		if p.flushed != nil {
			close(p.flushed)
			continue
		}
		r.mu.Lock()
		observer := r.status.Observer
		r.mu.Unlock()
		if observer {
			if err := r.observe(ctx, p.esk, p.k, p.payload, p.in); err != nil {
				return err
			}
			r.pending.Add(-1)
			continue
		}
		// An instance that lost the last output defers to the winner for a
		// while, as long as the winner usually lags: if this output lands
		// meanwhile, it compares and publishes nothing.
		if _, landed := r.landed.peek(p.esk, p.k); !landed && r.lostLast {
			if h, ok := r.landed.wait(ctx, p.esk, p.k, c.deference()); ok {
				if err := c.lost(ctx, p, h, time.Now()); err != nil {
					return err
				}
				r.pending.Add(-1)
				continue
			}
		}
		batch := c.gather(p)
		var err error
		if len(batch) < batchMin {
			err = c.emitRest(ctx, batch)
		} else {
			err = c.emitBatch(ctx, batch)
		}
		if err != nil {
			return err
		}
	}
}

// gather takes p and the outputs that follow it on the same ESK, at the
// next indices, already waiting and not landed yet, up to a batch.
func (c *committer) gather(p pendingOutput) []pendingOutput {
	batch := []pendingOutput{p}
	size := len(p.payload)
	for len(batch) < transport.MaxBatch {
		q, ok := c.peek()
		if !ok || q.flushed != nil || q.esk != p.esk || q.k != batch[len(batch)-1].k+1 || size+len(q.payload) > batchMaxBytes {
			break
		}
		if _, landed := c.r.landed.peek(q.esk, q.k); landed {
			break
		}
		c.held = nil
		batch = append(batch, q)
		size += len(q.payload)
	}
	return batch
}

// deference is how long an instance that lost the last output waits for
// the next to land: three times the winner's usual lag behind this
// instance, at least 100µs, at most Config.Deference. A winner that keeps
// up costs a short wait; a paused one, a short delay before this
// instance takes over.
func (c *committer) deference() time.Duration {
	most := c.r.cfg.Deference
	if most <= 0 {
		return 0
	}
	return min(most, max(100*time.Microsecond, 3*c.lag))
}

// lost settles p, which another instance wrote: equal, or a divergence.
func (c *committer) lost(ctx context.Context, p pendingOutput, h [32]byte, landedAt time.Time) error {
	r := c.r
	r.lostLast = true
	if lag := landedAt.Sub(p.ready); lag > 0 {
		c.lag = (4*c.lag + lag) / 5
	} else {
		c.lag = 4 * c.lag / 5
	}
	if h != sha256.Sum256(p.payload) {
		return r.diverged(ctx, p.esk, p.k, p.payload, p.in)
	}
	r.update(func(s *Status) { s.Lost++ })
	instruments().lost.Add(ctx, 1, r.measured)
	return nil
}

// emitBatch appends a batch of outputs, or compares them with those that
// landed.
func (c *committer) emitBatch(ctx context.Context, batch []pendingOutput) error {
	r := c.r
	payloads := make([][]byte, len(batch))
	for i, p := range batch {
		payloads[i] = p.payload
	}
	first := batch[0]
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		res, err := r.cfg.Log.AppendBatch(ctx, first.esk, first.k, payloads)
		switch {
		case err == nil && res.Outcome == transport.Written:
			r.lostLast = false
			r.pending.Add(-int64(len(batch)))
			n := uint64(len(batch))
			r.update(func(s *Status) { s.Won += n; s.Batches++ })
			instruments().won.Add(ctx, int64(n), r.measured)
			instruments().batches.Add(ctx, 1, r.measured)
			return nil
		case err == nil:
			// Another instance wrote at these indices: compare each output
			// with the one that landed, known from following the output
			// or else asked of the log by a conditional append, which
			// also writes the outputs past the other instance's last.
			return c.emitRest(ctx, batch)
		case errors.Is(err, transport.ErrIndexAhead):
			return fmt.Errorf("transform: %s expects %d outputs on %s before these, but the log has fewer: %w", r.cfg.Spec.Name, first.k, first.esk, err)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, transport.ErrUnavailable):
			r.cfg.Logger.Warn("outputs not settled, retrying", "transform", r.cfg.Spec.Name, "instance", r.cfg.Instance, "esk", first.esk, "index", first.k, "outputs", len(batch), "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return fmt.Errorf("transform: append outputs %s#%d..%d: %w", first.esk, first.k, first.k+uint64(len(batch))-1, err)
		}
	}
}

// emitRest settles outputs one by one.
func (c *committer) emitRest(ctx context.Context, rest []pendingOutput) error {
	for _, p := range rest {
		// Another instance was first: compare locally, publish nothing.
		if h, ok := c.r.landed.take(p.esk, p.k); ok {
			if err := c.lost(ctx, p, h, p.ready); err != nil {
				return err
			}
		} else if err := c.r.emitOne(p.ctx, p.esk, p.k, p.payload, p.in); err != nil {
			return err
		}
		c.r.pending.Add(-1)
	}
	return nil
}
