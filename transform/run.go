package transform

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/detbus/detbus/transport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
)

var tracer = otel.Tracer("github.com/detbus/detbus/transform")

// Run runs the instance until ctx is done (then it returns nil) or a
// fatal error: a divergence under StopOnDivergence ([*DivergenceError]),
// a snapshot it cannot restore ([ErrSnapshotVersion],
// [ErrSnapshotCorrupt]), or an output log that contradicts it. NATS being
// unavailable is not fatal: the instance retries the same output, which is
// safe, and other instances go on winning meanwhile.
//
// The instance restores the newest snapshot if there is one, then reads
// the inputs in the log's total order from the position after it. For
// each input it calls Step and hands each output, with its index, to the
// committer, which appends the outputs in runs (see the package
// documentation): each index is written by this instance (won), or found
// already written by a faster one and equal (lost), or found different (a
// divergence). It follows the output ESK meanwhile, so that an instance
// that lags learns the landed outputs and compares them without
// publishing. A snapshot is taken only once the outputs before it have
// settled.
//
// A Step error, or a panic, rejects the input: the runner appends a record
// {"input":{"esk","index","seq"},"error":"..."} at the next index of
// "<output>.rejected", the same on every instance, and goes on with the
// next input; the state must be as before the failed step.
func (r *Runner) Run(ctx context.Context) (err error) {
	track(r)
	defer untrack(r)
	finish := r.housekeeping(ctx)
	defer func() { finish(err) }()
	spec, l := r.cfg.Spec, r.cfg.Log
	t := spec.New()
	var inSeq, outputs, rejections uint64
	if st := r.cfg.Snapshots; st != nil {
		s, ok, err := st.Latest(ctx, r.snapSpec)
		if err != nil {
			return err
		}
		if !ok && r.cfg.StartAfter > 0 {
			// A new generation starts from the state the previous one
			// had at the chosen position.
			prev := r.first
			prev.Output = GenerationOutput(r.first.Output, r.cfg.Generation-1)
			prev.Name = generationName(r.first.Name, r.cfg.Generation-1)
			if s, err = st.At(ctx, prev, r.cfg.StartAfter); err != nil {
				return fmt.Errorf("transform: generation %d of %s starts after input %d: %w", r.cfg.Generation, spec.Name, r.cfg.StartAfter, err)
			}
			s.Outputs, s.Rejections, ok = 0, 0, true
		}
		if ok {
			if err := t.Restore(s.State); err != nil {
				return fmt.Errorf("%w: restore %s at input %d: %v", ErrSnapshotCorrupt, spec.Name, s.InputSeq, err)
			}
			inSeq, outputs, rejections = s.InputSeq, s.Outputs, s.Rejections
			r.cfg.Logger.Info("restored snapshot", "transform", spec.Name, "generation", r.status.Generation, "instance", r.cfg.Instance, "input_seq", inSeq, "outputs", outputs)
		}
	}
	r.update(func(s *Status) { s.InputSeq, s.Outputs, s.Rejections = inSeq, outputs, rejections })
	r.pending.Store(0)
	r.landed.reset()

	outer := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !r.cfg.Shadow {
		go r.followOutputs(ctx)
	}
	c := r.startCommitter(ctx, cancel)
	// stop returns the run's end: the committer's error if it failed,
	// else err as Run returns it.
	stop := func(err error) error {
		cancel()
		<-c.done
		if failed := c.failure(); failed != nil {
			return r.stopped(outer, failed)
		}
		return r.stopped(outer, err)
	}

	lastSnap, sinceSnap := time.Now(), 0
	for {
		inputs := l.Events(ctx, spec.Inputs, transport.ReadOptions{From: inSeq + 1, Follow: true})
		if r.wrapInputs != nil {
			inputs = r.wrapInputs(inputs)
		}
		for ev, err := range inputs {
			if err != nil {
				if ctx.Err() != nil {
					return stop(nil)
				}
				return stop(err)
			}
			in := Input{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ev.Time, ContentType: ev.ContentType(), Data: ev.Data}
			sctx, span := tracer.Start(ev.ContextWithTrace(ctx), "detbus.transform.step")
			if span.IsRecording() {
				span.SetAttributes(append(slices.Clip(r.attrs), attribute.String("detbus.esk", in.ESK), attribute.Int64("detbus.index", int64(in.Index)))...)
			}
			outs, stepErr := step(t, in)
			now := time.Now()
			// Outputs and rejections name their input and its hash: a
			// function of the input only, the same on every instance.
			var src transport.InputRef
			if stepErr != nil || len(outs) > 0 {
				src = l.InputRef(ev)
			}
			if stepErr != nil {
				var rec Rejection
				rec.Input.ESK, rec.Input.Index, rec.Input.Seq, rec.Error = in.ESK, in.Index, in.Seq, stepErr.Error()
				r.pending.Add(1)
				if err := c.add(ctx, pendingOutput{esk: rejectionsESK(spec), k: rejections, payload: JSON(rec), in: in, src: src, ctx: sctx, ready: now}); err != nil {
					span.End()
					return stop(err)
				}
				rejections++
				instruments().rejections.Add(ctx, 1, r.measured)
				outs = nil
			}
			for _, out := range outs {
				r.pending.Add(1)
				if err := c.add(ctx, pendingOutput{esk: spec.Output, k: outputs, payload: out, in: in, src: src, ctx: sctx, ready: now}); err != nil {
					span.End()
					return stop(err)
				}
				outputs++
			}
			span.End()
			inSeq = in.Seq
			sinceSnap++
			r.update(func(s *Status) { s.InputSeq, s.Outputs, s.Rejections = inSeq, outputs, rejections; s.Inputs++ })
			instruments().inputs.Add(ctx, 1, r.measured)
			if r.cfg.Snapshots != nil && (sinceSnap >= r.cfg.SnapshotEvery || time.Since(lastSnap) >= r.cfg.SnapshotInterval) {
				// A snapshot counts the outputs so far: they must be in the
				// log before a restore can start after them.
				if err := c.flush(ctx); err != nil {
					return stop(err)
				}
				if err := r.snapshot(ctx, t, inSeq, outputs, rejections); err != nil {
					return stop(err)
				}
				lastSnap, sinceSnap = time.Now(), 0
			}
		}
		if ctx.Err() != nil {
			return stop(nil)
		}
		// The stream of inputs ended by itself: resume after the last
		// input applied, as the folds of kv and tasks do.
		r.cfg.Logger.Warn("the inputs stopped; resuming", "transform", spec.Name, "instance", r.cfg.Instance, "after_seq", inSeq)
		if err := sleepCtx(ctx, time.Second); err != nil {
			return stop(nil)
		}
	}
}

// step calls t.Step, turning a panic into the step's error: every
// instance panics alike on the same input, so the input is rejected the
// same way on every instance, and processing goes on. A panic may leave
// the state partly changed; it is then changed the same on every
// instance, since the DET is deterministic.
func step(t Transform, in Input) (outs [][]byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			outs, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return t.Step(NewContext(in), in)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// housekeeping refreshes the stream head (for the lag metric) and
// publishes the status, if there is a board, every StatusInterval until
// the returned function is called with the run's outcome, which it
// publishes last.
func (r *Runner) housekeeping(ctx context.Context) func(error) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(r.cfg.StatusInterval)
		defer tick.Stop()
		for {
			r.refreshHead(ctx)
			if r.cfg.Board != nil {
				_ = r.cfg.Board.Publish(ctx, r.Status())
			}
			select {
			case <-tick.C:
			case <-r.published:
			case <-done:
				return
			}
		}
	}()
	return func(err error) {
		close(done)
		<-finished
		r.update(func(s *Status) {
			s.Stopped = "stopped"
			if err != nil {
				s.Stopped = err.Error()
			}
		})
		if r.cfg.Board == nil {
			return
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = r.cfg.Board.Publish(pctx, r.Status())
	}
}

// refreshHead learns the newest input's stream sequence, for the lag:
// the DET's own inputs, not the whole stream's head.
func (r *Runner) refreshHead(ctx context.Context) {
	var head uint64
	for _, p := range r.cfg.Spec.Inputs {
		seq, err := r.cfg.Log.LastSeq(ctx, p)
		if err != nil {
			return
		}
		head = max(head, seq)
	}
	r.head.Store(head)
}

// stopped turns an error caused by ctx ending into a clean stop.
func (r *Runner) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrDivergence) {
		return nil
	}
	return err
}

// observe waits until index k of esk is written by another instance and
// compares it with payload.
func (r *Runner) observe(ctx context.Context, esk string, k uint64, payload []byte, in Input) error {
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ev, err := r.cfg.Log.Get(ctx, esk, k)
		switch {
		case err == nil && string(ev.Data) == string(payload):
			r.update(func(s *Status) { s.Lost++ })
			return nil
		case err == nil:
			return r.diverged(ctx, esk, k, payload, in)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *Runner) diverged(ctx context.Context, esk string, k uint64, payload []byte, in Input) error {
	found := "unknown"
	if ev, err := r.cfg.Log.Get(ctx, esk, k); err == nil {
		found = hashOf(ev.Data)
	}
	d := DivergenceError{What: "output", Name: r.cfg.Spec.Name, Instance: r.cfg.Instance, Index: k,
		InputESK: in.ESK, InputSeq: in.Seq, OwnHash: hashOf(payload), FoundHash: found}
	return r.report(d)
}

// report records a divergence and applies the policy.
func (r *Runner) report(d DivergenceError) error {
	r.cfg.Logger.Error("divergence", "transform", d.Name, "instance", d.Instance, "what", d.What, "index", d.Index,
		"input_esk", d.InputESK, "input_seq", d.InputSeq, "own_sha256", d.OwnHash, "landed_sha256", d.FoundHash,
		"policy", map[DivergencePolicy]string{StopOnDivergence: "stop", ObserveOnDivergence: "observe"}[r.cfg.OnDivergence])
	r.update(func(s *Status) {
		s.Divergences = append(s.Divergences, d)
		s.Observer = s.Observer || r.cfg.OnDivergence == ObserveOnDivergence
	})
	instruments().divergences.Add(context.Background(), 1, r.measured)
	select { // publish now
	case r.published <- struct{}{}:
	default:
	}
	if r.cfg.OnDivergence == ObserveOnDivergence {
		return nil
	}
	return &d
}

func (r *Runner) snapshot(ctx context.Context, t Transform, inSeq, outputs, rejections uint64) error {
	state, err := t.Snapshot()
	if err != nil {
		return fmt.Errorf("transform: snapshot %s at input %d: %w", r.cfg.Spec.Name, inSeq, err)
	}
	s := newSnapshot(r.snapSpec, inSeq, outputs, rejections, state)
	stored, agree, err := r.cfg.Snapshots.Save(ctx, s, r.cfg.Instance)
	if err != nil {
		r.cfg.Logger.Warn("snapshot not saved", "transform", s.Name, "instance", r.cfg.Instance, "input_seq", inSeq, "err", err)
		return nil // a missing snapshot costs replay time, nothing else
	}
	if !agree {
		return r.report(DivergenceError{What: "snapshot", Name: s.Name, Instance: r.cfg.Instance, Index: outputs,
			InputSeq: inSeq, OwnHash: s.Hash, FoundHash: stored.Hash})
	}
	r.update(func(st *Status) { st.LastSnapshot = s.Taken })
	return nil
}
