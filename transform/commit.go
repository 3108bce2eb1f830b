package transform

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/detbus/detbus/transport"
)

// Group commit. The run loop steps inputs and hands each output, with its
// index, to the committer, which appends them in order in another
// goroutine: while one append is in flight the loop goes on stepping, and
// the outputs that pile up meanwhile go out together as one run
// (transport.Log.AppendRun: one fast batch, about one round trip
// whatever its length, each index filled once however many instances
// race). An idle DET thus pays one round trip per output, a loaded one
// amortises it over up to a thousand.
//
// Racing stays exact: an index holds the first output that reached it,
// and every instance compares its own output with the one that landed,
// by hash, index by index: the outputs it sees landed (by following the
// output ESKs) before it sends them are compared at once and not sent;
// those it sent are settled as the follower sees them, won when they
// carry the write id of this instance's run.

// Bounds of a run of outputs.
const (
	batchMaxBytes = 8 << 20                // payload bytes in one run
	commitQueue   = 4 * transport.MaxBatch // outputs stepped ahead of the commits
	// verifyAfter is how long an output sent waits to be seen by the
	// follower before it is read from the log instead.
	verifyAfter = time.Second
)

// pendingOutput is an output stepped but not yet settled (written, or
// compared with the one that landed), or a flush marker.
type pendingOutput struct {
	esk     string
	k       uint64
	payload []byte
	in      Input
	src     transport.InputRef // the input's identity and hash, in the output's headers
	ctx     context.Context    // the step's, for traces
	ready   time.Time          // when it was stepped
	flushed chan struct{}      // a flush marker: closed once everything before it settled
}

// sentOutput is an output appended by a run, waiting to be compared with
// what landed at its index.
type sentOutput struct {
	pendingOutput
	writeID string
	sent    time.Time
}

// committer settles the outputs of a run in order.
type committer struct {
	r      *Runner
	queue  chan pendingOutput
	held   *pendingOutput // taken from the queue but not settled yet
	lag    time.Duration  // the winner's usual lag behind this instance, for deference
	sent   []sentOutput   // appended, not compared yet, in order
	inSent map[string]int // outputs in sent, by ESK
	// readers read the landed outputs in order, for a shadow.
	readers map[string]*outputReader

	done chan struct{} // closed when the committer ends
	err  error         // why it ended, nil if ctx did; set before done closes
}

// startCommitter starts settling outputs until ctx is done; an error
// that stops the committer cancels the run through cancel.
func (r *Runner) startCommitter(ctx context.Context, cancel context.CancelFunc) *committer {
	c := &committer{r: r, queue: make(chan pendingOutput, commitQueue), done: make(chan struct{}), inSent: map[string]int{}}
	go func() {
		err := c.run(ctx)
		c.stopReaders()
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

// next returns the next pending output, settling the outputs sent as
// they are seen landed while it waits.
func (c *committer) next(ctx context.Context) (pendingOutput, error) {
	for {
		if p := c.held; p != nil {
			c.held = nil
			return *p, nil
		}
		if err := c.settleSent(ctx); err != nil {
			return pendingOutput{}, err
		}
		if len(c.sent) == 0 {
			select {
			case p := <-c.queue:
				return p, nil
			case <-ctx.Done():
				return pendingOutput{}, ctx.Err()
			}
		}
		if err := c.awaitLanded(ctx, c.queue); err != nil {
			return pendingOutput{}, err
		}
	}
}

// awaitLanded waits until an output lands, the oldest output sent is due
// to be read from the log, or (if not nil) a pending output arrives.
func (c *committer) awaitLanded(ctx context.Context, queue <-chan pendingOutput) error {
	wake := c.r.landed.waitChan()
	t := time.NewTimer(max(0, time.Until(c.sent[0].sent.Add(verifyAfter))))
	defer t.Stop()
	select {
	case p := <-queue:
		c.held = &p
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// drain settles every output sent.
func (c *committer) drain(ctx context.Context) error {
	for {
		if err := c.settleSent(ctx); err != nil || len(c.sent) == 0 {
			return err
		}
		if err := c.awaitLanded(ctx, nil); err != nil {
			return err
		}
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
		p, err := c.next(ctx)
		if err != nil {
			return err
		}
		if p.flushed != nil {
			if err := c.drain(ctx); err != nil {
				return err
			}
			close(p.flushed)
			continue
		}
		if r.cfg.Shadow {
			if err := c.shadow(ctx, p); err != nil {
				return err
			}
			continue
		}
		r.mu.Lock()
		observer := r.status.Observer
		r.mu.Unlock()
		if observer {
			if err := r.observe(ctx, p.esk, p.k, p.payload, p.in); err != nil {
				return err
			}
			c.settled(p.esk, p.k)
			continue
		}
		// Another instance was first: compare locally, publish nothing.
		if l, ok := r.landed.take(p.esk, p.k); ok {
			if err := c.lost(ctx, p, l.hash, p.ready); err != nil {
				return err
			}
			continue
		}
		// An instance that lost the last output defers to the winner for a
		// while, as long as the winner usually lags: if this output lands
		// meanwhile, it compares and publishes nothing.
		if r.lostLast {
			if l, ok := r.landed.wait(ctx, p.esk, p.k, c.deference()); ok {
				if err := c.lost(ctx, p, l.hash, time.Now()); err != nil {
					return err
				}
				continue
			}
		}
		if err := c.append(ctx, c.gather(p)); err != nil {
			return err
		}
	}
}

// gather takes p and the outputs that follow it on the same ESK, at the
// next indices, already waiting and not seen landed, up to a run.
func (c *committer) gather(p pendingOutput) []pendingOutput {
	run := []pendingOutput{p}
	size := len(p.payload)
	for len(run) < transport.MaxBatch {
		q, ok := c.peek()
		if !ok || q.flushed != nil || q.esk != p.esk || q.k != run[len(run)-1].k+1 || size+len(q.payload) > batchMaxBytes {
			break
		}
		if c.r.landed.seen(q.esk, q.k) {
			break
		}
		c.held = nil
		run = append(run, q)
		size += len(q.payload)
	}
	return run
}

// append sends a run of outputs and records them as sent, to be
// compared with what landed.
func (c *committer) append(ctx context.Context, run []pendingOutput) error {
	r := c.r
	payloads := make([][]byte, len(run))
	inputs := make([]transport.InputRef, len(run))
	for i, p := range run {
		payloads[i], inputs[i] = p.payload, p.src
	}
	first := run[0]
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		res, err := r.cfg.Log.AppendRunFrom(first.ctx, first.esk, first.k, payloads, inputs)
		switch {
		case err == nil || res.Filled > 0:
			now := time.Now()
			for _, p := range run[:res.Filled] {
				c.sent = append(c.sent, sentOutput{pendingOutput: p, writeID: res.WriteID, sent: now})
			}
			c.inSent[first.esk] += res.Filled
			if res.Filled > 1 {
				r.update(func(s *Status) { s.Batches++ })
				instruments().batches.Add(ctx, 1, r.measured)
			}
			if err == nil {
				return nil
			}
			run, payloads, inputs, first = run[res.Filled:], payloads[res.Filled:], inputs[res.Filled:], run[res.Filled]
			if errors.Is(err, transport.ErrUnavailable) {
				continue
			}
			return fmt.Errorf("transform: append outputs %s#%d..: %w", first.esk, first.k, err)
		case errors.Is(err, transport.ErrIndexAhead):
			return fmt.Errorf("transform: %s expects %d outputs on %s before these, but the log has fewer: %w", r.cfg.Spec.Name, first.k, first.esk, err)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, transport.ErrUnavailable):
			r.cfg.Logger.Warn("outputs not settled, retrying", "transform", r.cfg.Spec.Name, "instance", r.cfg.Instance, "esk", first.esk, "index", first.k, "outputs", len(run), "err", err)
			if err := sleepCtx(ctx, backoff); err != nil {
				return err
			}
		default:
			return fmt.Errorf("transform: append outputs %s#%d..%d: %w", first.esk, first.k, first.k+uint64(len(run))-1, err)
		}
	}
}

// settleSent compares the outputs sent with those that landed, in order,
// as far as the follower has seen them; an output the follower has not
// seen within verifyAfter is read from the log.
func (c *committer) settleSent(ctx context.Context) error {
	r := c.r
	for len(c.sent) > 0 {
		s := c.sent[0]
		l, ok := r.landed.take(s.esk, s.k)
		if !ok {
			if time.Since(s.sent) < verifyAfter {
				return nil
			}
			if err := c.readLanded(ctx, s); err != nil {
				return err
			}
			continue
		}
		c.sent = c.sent[1:]
		if c.inSent[s.esk]--; c.inSent[s.esk] == 0 {
			delete(c.inSent, s.esk)
		}
		if l.writeID == s.writeID {
			r.lostLast = false
			r.update(func(st *Status) { st.Won++ })
			instruments().won.Add(ctx, 1, r.measured)
			c.settled(s.esk, s.k)
			continue
		}
		if err := c.lost(ctx, s.pendingOutput, l.hash, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// readLanded reads the outputs landed from s on, as far as the outputs
// sent go, into the landed ones: one read for all of them.
func (c *committer) readLanded(ctx context.Context, s sentOutput) error {
	l := c.r.cfg.Log
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ev, err := l.Get(ctx, s.esk, s.k)
		if err == nil {
			c.r.landed.put(ev.ESK, ev.Index, sha256.Sum256(ev.Data), ev.Header.Get(transport.HeaderWriteID))
			last := c.sent[len(c.sent)-1]
			if last.esk == s.esk && last.k > s.k {
				for ev, err := range l.Events(ctx, []string{s.esk}, transport.ReadOptions{From: ev.Seq + 1}) {
					if err != nil {
						break // what is missing is asked for again
					}
					c.r.landed.put(ev.ESK, ev.Index, sha256.Sum256(ev.Data), ev.Header.Get(transport.HeaderWriteID))
					if ev.Index >= last.k {
						break
					}
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.r.cfg.Logger.Warn("output not read back, retrying", "transform", c.r.cfg.Spec.Name, "instance", c.r.cfg.Instance, "esk", s.esk, "index", s.k, "err", err)
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
	}
}

// settled counts an output settled; the landed outputs of its ESK up to
// it are no longer wanted unless outputs sent before it wait for theirs.
func (c *committer) settled(esk string, k uint64) {
	c.r.pending.Add(-1)
	if c.inSent[esk] == 0 {
		c.r.landed.settledBelow(esk, k+1)
	}
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
		if err := r.diverged(ctx, p.esk, p.k, p.payload, p.in); err != nil {
			return err
		}
	} else {
		r.update(func(s *Status) { s.Lost++ })
		instruments().lost.Add(ctx, 1, r.measured)
	}
	c.settled(p.esk, p.k)
	return nil
}

// followOutputs reads the output and rejection ESKs as they grow and
// records every landed output by index, so that an instance compares its
// outputs locally, without a round trip; reading them also teaches the
// log their positions. It resumes after an error.
func (r *Runner) followOutputs(ctx context.Context) {
	l := r.cfg.Log
	var from uint64
	for backoff := 10 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, time.Second) {
		if from == 0 {
			st, err := l.State(ctx, "")
			if err != nil {
				_ = sleepCtx(ctx, backoff)
				continue
			}
			from = st.LastSeq + 1
		}
		esks := []string{r.cfg.Spec.Output, rejectionsESK(r.cfg.Spec)}
		for ev, err := range l.Events(ctx, esks, transport.ReadOptions{From: from, Follow: true}) {
			if err != nil {
				if ctx.Err() == nil {
					r.cfg.Logger.Warn("following the outputs: resuming", "transform", r.cfg.Spec.Name, "instance", r.cfg.Instance, "err", err)
				}
				break
			}
			r.landed.put(ev.ESK, ev.Index, sha256.Sum256(ev.Data), ev.Header.Get(transport.HeaderWriteID))
			from, backoff = ev.Seq+1, 10*time.Millisecond
		}
		_ = sleepCtx(ctx, backoff)
	}
}

// landedOutputs holds the outputs that landed and that this instance has
// not compared yet, by ESK and index.
type landedOutputs struct {
	mu     sync.Mutex
	byKey  map[landedKey]landedOutput
	below  map[string]uint64 // per ESK, the index up to which every output is settled
	wakeCh chan struct{}     // closed on the next put, when someone waits
}

type landedKey struct {
	esk   string
	index uint64
}

type landedOutput struct {
	hash    [32]byte
	writeID string
}

// maxLanded bounds the outputs held: an instance further behind than that
// compares by reading the log instead.
const maxLanded = 1 << 16

func (lo *landedOutputs) put(esk string, index uint64, h [32]byte, writeID string) {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.byKey == nil {
		lo.byKey = map[landedKey]landedOutput{}
	}
	if index >= lo.below[esk] && len(lo.byKey) < maxLanded {
		lo.byKey[landedKey{esk, index}] = landedOutput{h, writeID}
	}
	if lo.wakeCh != nil {
		close(lo.wakeCh)
		lo.wakeCh = nil
	}
}

// reset forgets everything held, for a new run.
func (lo *landedOutputs) reset() {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	lo.byKey, lo.below = nil, nil
}

// settledBelow records that the outputs of esk below index are settled:
// they are no longer held.
func (lo *landedOutputs) settledBelow(esk string, index uint64) {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.below == nil {
		lo.below = map[string]uint64{}
	}
	if index > lo.below[esk] {
		lo.below[esk] = index
	}
}

// waitChan returns a channel closed at the next put.
func (lo *landedOutputs) waitChan() <-chan struct{} {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.wakeCh == nil {
		lo.wakeCh = make(chan struct{})
	}
	return lo.wakeCh
}

// wait is take, waiting up to d for the output to land.
func (lo *landedOutputs) wait(ctx context.Context, esk string, index uint64, d time.Duration) (landedOutput, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		wake := lo.waitChan()
		if l, ok := lo.take(esk, index); ok {
			return l, true
		}
		select {
		case <-wake:
		case <-timer.C:
			return lo.take(esk, index)
		case <-ctx.Done():
			return landedOutput{}, false
		}
	}
}

// seen reports whether the output at (esk, index) is held.
func (lo *landedOutputs) seen(esk string, index uint64) bool {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	_, ok := lo.byKey[landedKey{esk, index}]
	return ok
}

// take returns and forgets the output at (esk, index).
func (lo *landedOutputs) take(esk string, index uint64) (landedOutput, bool) {
	lo.mu.Lock()
	defer lo.mu.Unlock()
	k := landedKey{esk, index}
	l, ok := lo.byKey[k]
	delete(lo.byKey, k)
	return l, ok
}

// outputReader reads the events of one output ESK in order, from the
// first, following it: what a shadow compares its outputs with.
type outputReader struct {
	next    func() (transport.Event, error, bool)
	stop    func()
	lastSeq uint64
}

// shadow compares p with the output that landed at its index, waiting
// for it to land, and counts a match or a mismatch.
func (c *committer) shadow(ctx context.Context, p pendingOutput) error {
	r := c.r
	if c.readers == nil {
		c.readers = map[string]*outputReader{}
	}
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		rd := c.readers[p.esk]
		if rd == nil {
			rd = &outputReader{}
			c.readers[p.esk] = rd
		}
		if rd.next == nil {
			rd.next, rd.stop = iter.Pull2(r.cfg.Log.Events(ctx, []string{p.esk}, transport.ReadOptions{From: rd.lastSeq + 1, Follow: true}))
		}
		ev, err, ok := rd.next()
		if ok && err == nil {
			rd.lastSeq = ev.Seq
			switch {
			case ev.Index < p.k:
				continue
			case ev.Index > p.k:
				return fmt.Errorf("transform: shadow of %s: output %s#%d read after #%d", r.cfg.Spec.Name, p.esk, ev.Index, p.k)
			}
			if sha256.Sum256(ev.Data) == sha256.Sum256(p.payload) {
				r.update(func(s *Status) { s.Matches++ })
				instruments().shadowMatches.Add(ctx, 1, r.measured)
			} else {
				d := DivergenceError{What: "shadow output", Name: r.cfg.Spec.Name, Instance: r.cfg.Instance, Index: p.k,
					InputESK: p.in.ESK, InputSeq: p.in.Seq, OwnHash: hashOf(p.payload), FoundHash: hashOf(ev.Data)}
				first := false
				r.update(func(s *Status) {
					s.Mismatches++
					if s.FirstMismatch == nil {
						s.FirstMismatch, first = &d, true
					}
				})
				instruments().shadowMismatches.Add(ctx, 1, r.measured)
				if first {
					r.cfg.Logger.Warn("shadow mismatch", "transform", d.Name, "instance", d.Instance, "index", d.Index,
						"input_esk", d.InputESK, "input_seq", d.InputSeq, "own_sha256", d.OwnHash, "landed_sha256", d.FoundHash)
					select { // publish now
					case r.published <- struct{}{}:
					default:
					}
				}
			}
			c.settled(p.esk, p.k)
			return nil
		}
		rd.stop()
		rd.next = nil
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.cfg.Logger.Warn("shadow: reading the outputs, resuming", "transform", r.cfg.Spec.Name, "instance", r.cfg.Instance, "err", err)
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
	}
}

// stopReaders releases a shadow's output readers.
func (c *committer) stopReaders() {
	for _, rd := range c.readers {
		if rd.stop != nil {
			rd.stop()
		}
	}
}
