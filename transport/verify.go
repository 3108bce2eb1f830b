package transport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
)

// ErrChainMismatch is wrapped by the error of [Log.VerifyChain] when the
// stream disagrees with its checkpoints: a forged checkpoint, or events
// that differ from what the checkpoints confirmed.
var ErrChainMismatch = errors.New("transport: the chain disagrees with its checkpoints")

// VerifiedCheckpoint is a checkpoint a verification found right, and
// where it is stored: the point a later verification resumes from.
type VerifiedCheckpoint struct {
	Checkpoint
	At uint64 `json:"at"`
}

// VerifyOptions says what [Log.VerifyChain] verifies.
type VerifyOptions struct {
	// From resumes after a checkpoint that an earlier verification of the
	// same stream confirmed (its [ChainReport.Resume]): only the events
	// after the position it covers are read. Nil verifies from the first
	// event.
	From *VerifiedCheckpoint
	// To is the last position verified (0: the stream's last sequence as
	// its leader reports it at the call).
	To uint64
	// Against is another log holding the same events (the origin, or
	// another copy of it), taken as the reference when the stream
	// disagrees with a checkpoint: VerifyChain then finds the first
	// position where the two differ, and tells a forged checkpoint (both
	// streams agree, the checkpoint does not) from a changed stream.
	Against *Log
}

// ChainReport is the outcome of [Log.VerifyChain].
type ChainReport struct {
	Stream string `json:"stream"` // the stream verified
	Origin string `json:"origin"` // the stream whose chain it holds ([Log.ChainOrigin])
	// From and To are the positions read: From is after the position the
	// resume point covers.
	From   uint64     `json:"from"`
	To     uint64     `json:"to"`
	Events uint64     `json:"events"` // messages hashed
	Head   ChainPoint `json:"head"`   // the chain at To
	// Checkpoints counts the checkpoints met, Confirmed those found right.
	Checkpoints int `json:"checkpoints"`
	Confirmed   int `json:"confirmed"`
	// Resume is the newest checkpoint confirmed (From when none was):
	// the position up to which the stream is verified, and where the next
	// verification resumes. Events after Resume.Seq are hashed but not
	// yet confirmed by any checkpoint.
	Resume   *VerifiedCheckpoint `json:"resume,omitempty"`
	Problems []ChainProblem      `json:"problems,omitempty"`
}

// OK reports whether the verification found no problem.
func (r ChainReport) OK() bool { return len(r.Problems) == 0 }

// ProblemKind classifies a [ChainProblem].
type ProblemKind string

const (
	// ProblemForged is a checkpoint that the stream proves false: a later
	// checkpoint (or the Against stream) confirms the events it covers,
	// and they do not give its hash; or it cannot be a node's (it names
	// another stream, claims its own position or a later one, or one
	// before a checkpoint already confirmed).
	ProblemForged ProblemKind = "forged"
	// ProblemDiffers is a stream that differs from its checkpoints after
	// a position: the checkpoint named, and every later one, disagree
	// with the events. With Against, FirstDiff is the first event that
	// differs.
	ProblemDiffers ProblemKind = "differs"
	// ProblemMalformed is an event on the checkpoint ESK that is not a
	// checkpoint.
	ProblemMalformed ProblemKind = "malformed"
)

// ChainProblem is one disagreement between a stream and its checkpoints.
type ChainProblem struct {
	Kind ProblemKind `json:"kind"`
	// At is where the checkpoint is stored; Claim is what it says;
	// Computed is the stream's chain at the position it claims (zero when
	// not computed).
	At       uint64     `json:"at"`
	Claim    Checkpoint `json:"claim"`
	Computed Hash       `json:"computed"`
	// After is, for ProblemDiffers, the position up to which the stream
	// agrees with its checkpoints (0: none confirmed).
	After uint64 `json:"after,omitempty"`
	// FirstDiff is, with Against, the first position where the stream and
	// the reference differ (an event changed, missing or added).
	FirstDiff uint64 `json:"first_diff,omitempty"`
	Reason    string `json:"reason"`
}

func (p ChainProblem) String() string {
	switch p.Kind {
	case ProblemMalformed:
		return fmt.Sprintf("malformed checkpoint at position %d: %s", p.At, p.Reason)
	case ProblemForged:
		return fmt.Sprintf("forged checkpoint at position %d (claims chain %s at position %d, by %q): %s", p.At, p.Claim.Hash, p.Claim.Seq, p.Claim.By, p.Reason)
	}
	s := fmt.Sprintf("the stream differs from its checkpoints after position %d: the checkpoint at position %d claims chain %s at position %d, the events give %s",
		p.After, p.At, p.Claim.Hash, p.Claim.Seq, p.Computed)
	if p.FirstDiff > 0 {
		s += fmt.Sprintf("; first differing event at position %d", p.FirstDiff)
	}
	if p.Reason != "" {
		s += " (" + p.Reason + ")"
	}
	return s
}

// ringSize bounds the chain links a verification keeps to check a
// checkpoint's claim without reading again: a claim further back than
// that is checked by extending the chain from the last confirmed
// checkpoint.
const ringSize = 1 << 16

// VerifyChain recomputes the chain of the log's stream (its own, or a
// copy: [Log.Copy], or a Log opened on a mirror) and checks every
// checkpoint on [ChainESK] it meets against it. Reading is incremental:
// with VerifyOptions.From it starts after the position of a checkpoint
// confirmed before, after checking that the checkpoint is still stored
// where it was, so a verification costs the events since the last one.
//
// A checkpoint that disagrees with the events is either forged, or the
// events before it changed. A later checkpoint tells which: if it agrees
// with the events, they are right, and the earlier one is forged; if
// every later checkpoint disagrees too, the stream differs from its
// checkpoints after the last confirmed one (ProblemDiffers). When no
// checkpoint follows, Against decides, and locates the first event that
// differs.
//
// The report holds every problem; the error then wraps
// [ErrChainMismatch] and names the first. Other errors: [ErrUnavailable]
// when NATS does not answer (the report says how far it got),
// [ErrInvalidOption] for a To before From's position.
func (l *Log) VerifyChain(ctx context.Context, opts VerifyOptions) (ChainReport, error) {
	v := verifier{l: l, subject: l.Subject(ChainESK), rep: ChainReport{Stream: l.cfg.Stream, Origin: l.ChainOrigin()}}
	v.ring = make([]ChainPoint, 0, ringSize)
	if f := opts.From; f != nil {
		if err := v.checkResume(ctx, *f); err != nil {
			return v.rep, err
		}
		fc := *f
		v.rep.Resume, v.good = &fc, f.Point()
	}
	to := opts.To
	if to == 0 {
		head, err := l.head(ctx)
		if err != nil {
			return v.rep, err
		}
		to = max(head, v.good.Seq)
	}
	if to < v.good.Seq {
		return v.rep, fmt.Errorf("%w: verify to position %d, before the resume point's %d", ErrInvalidOption, to, v.good.Seq)
	}
	v.rep.From, v.rep.To = v.good.Seq+1, to
	cur := v.good
	v.add(cur)
	var eh eventHasher
	err := l.scan(ctx, v.good.Seq+1, to, func(m *storedMsg) error {
		cur = ChainPoint{Seq: m.Seq, Hash: eh.link(cur.Hash, eh.event(m.Subject, m.Seq, m.Time, m.Header, m.Data))}
		v.add(cur)
		v.rep.Events++
		if m.Subject != v.subject {
			return nil
		}
		return v.checkpoint(ctx, m)
	})
	v.rep.Head = ChainPoint{Seq: to, Hash: cur.Hash}
	if err != nil {
		return v.rep, err
	}
	for i := range v.pending {
		v.pending[i].After = v.good.Seq
	}
	if opts.Against != nil && len(v.pending) > 0 {
		if err := v.against(ctx, opts.Against); err != nil {
			return v.rep, err
		}
	}
	v.rep.Problems = append(v.rep.Problems, v.pending...)
	slices.SortStableFunc(v.rep.Problems, func(a, b ChainProblem) int { return cmp.Compare(a.At, b.At) })
	if len(v.rep.Problems) > 0 {
		return v.rep, fmt.Errorf("%w: stream %s: %s", ErrChainMismatch, l.cfg.Stream, v.rep.Problems[0])
	}
	return v.rep, nil
}

// verifier is the state of one VerifyChain.
type verifier struct {
	l       *Log
	subject string // the checkpoints' subject
	rep     ChainReport
	good    ChainPoint     // the chain at the newest position a checkpoint confirmed
	pending []ChainProblem // checkpoints after good that disagree, not yet told forged or not
	ring    []ChainPoint   // the latest links, oldest first from ringStart
	start   int
}

func (v *verifier) add(p ChainPoint) {
	if len(v.ring) < cap(v.ring) {
		v.ring = append(v.ring, p)
		return
	}
	v.ring[v.start] = p
	v.start = (v.start + 1) % len(v.ring)
}

// at is the chain at position seq from the ring: the newest link at or
// before seq, if the ring reaches back to it.
func (v *verifier) at(seq uint64) (Hash, bool) {
	n := len(v.ring)
	get := func(i int) ChainPoint { return v.ring[(v.start+i)%n] }
	if n == 0 || seq < get(0).Seq {
		return Hash{}, false
	}
	i := sort.Search(n, func(i int) bool { return get(i).Seq > seq })
	return get(i - 1).Hash, true
}

// checkResume checks that the resume point is still stored where it was.
func (v *verifier) checkResume(ctx context.Context, f VerifiedCheckpoint) error {
	m, found, err := v.l.getOwn(ctx, v.l.cfg.Stream, f.At)
	if err != nil {
		return err
	}
	gone := func(why string) error {
		p := ChainProblem{Kind: ProblemDiffers, At: f.At, Claim: f.Checkpoint, Reason: "the checkpoint an earlier verification confirmed here " + why + ": the stream changed since"}
		v.rep.Problems = append(v.rep.Problems, p)
		return fmt.Errorf("%w: stream %s: %s", ErrChainMismatch, v.l.cfg.Stream, p.Reason)
	}
	if !found {
		return gone("is gone")
	}
	cp, err := DecodeCheckpoint(m.Data)
	if m.Seq != f.At || m.Subject != v.subject || err != nil || cp != f.Checkpoint {
		return gone("is no longer there")
	}
	return nil
}

// checkpoint checks the checkpoint m against the chain.
func (v *verifier) checkpoint(ctx context.Context, m *storedMsg) error {
	v.rep.Checkpoints++
	cp, err := DecodeCheckpoint(m.Data)
	if err != nil {
		v.rep.Problems = append(v.rep.Problems, ChainProblem{Kind: ProblemMalformed, At: m.Seq, Reason: err.Error()})
		return nil
	}
	forged := func(computed Hash, why string, args ...any) {
		v.rep.Problems = append(v.rep.Problems, ChainProblem{Kind: ProblemForged, At: m.Seq, Claim: cp, Computed: computed, Reason: fmt.Sprintf(why, args...)})
	}
	switch {
	case cp.Stream != v.rep.Origin:
		forged(Hash{}, "it names stream %s, not %s", cp.Stream, v.rep.Origin)
		return nil
	case cp.Seq >= m.Seq:
		forged(Hash{}, "it claims a position at or after its own")
		return nil
	}
	computed, ok := v.at(cp.Seq)
	if !ok {
		if cp.Seq < v.good.Seq {
			forged(Hash{}, "it claims a position before that of the checkpoint confirmed at position %d (checkpoints only advance)", v.good.Seq)
			return nil
		}
		p, err := v.l.Chain(ctx, v.good, cp.Seq)
		if err != nil {
			return err
		}
		computed = p.Hash
	}
	if computed != cp.Hash {
		if cp.Seq <= v.good.Seq {
			forged(computed, "the checkpoint confirmed at position %d covers the events it claims", v.good.Seq)
			return nil
		}
		v.pending = append(v.pending, ChainProblem{Kind: ProblemDiffers, At: m.Seq, Claim: cp, Computed: computed})
		return nil
	}
	v.rep.Confirmed++
	if cp.Seq < v.good.Seq {
		return nil
	}
	v.good = cp.Point()
	v.rep.Resume = &VerifiedCheckpoint{Checkpoint: cp, At: m.Seq}
	// The events up to cp.Seq are confirmed: earlier claims on them that
	// disagreed are false.
	v.pending = slices.DeleteFunc(v.pending, func(p ChainProblem) bool {
		if p.Claim.Seq > cp.Seq {
			return false
		}
		p.Kind = ProblemForged
		p.Reason = fmt.Sprintf("the checkpoint at position %d confirms the events up to position %d", m.Seq, cp.Seq)
		v.rep.Problems = append(v.rep.Problems, p)
		return true
	})
	return nil
}

// against compares the stream with ref after the last confirmed
// position: it finds the first position where they differ, and judges
// each pending checkpoint by ref's chain.
func (v *verifier) against(ctx context.Context, ref *Log) error {
	last := v.good.Seq
	for _, p := range v.pending {
		last = max(last, p.Claim.Seq)
	}
	first, err := firstDifference(ctx, v.l, ref, v.good.Seq+1, last)
	if err != nil {
		return err
	}
	slices.SortStableFunc(v.pending, func(a, b ChainProblem) int { return cmp.Compare(a.Claim.Seq, b.Claim.Seq) })
	refPoint := v.good
	for i := range v.pending {
		p := &v.pending[i]
		if refPoint, err = ref.Chain(ctx, refPoint, p.Claim.Seq); err != nil {
			return err
		}
		p.FirstDiff = first
		switch {
		case refPoint.Hash == p.Claim.Hash:
			p.Reason = fmt.Sprintf("stream %s agrees with the checkpoint", ref.cfg.Stream)
		case refPoint.Hash == p.Computed:
			p.Kind, p.FirstDiff = ProblemForged, 0
			p.Reason = fmt.Sprintf("stream %s holds the same events", ref.cfg.Stream)
		default:
			p.Reason = fmt.Sprintf("stream %s disagrees with the checkpoint too", ref.cfg.Stream)
		}
	}
	return nil
}

// firstDifference reads a and b side by side from position from to to
// and returns the first position where their events differ (one has an
// event the other lacks, or their hashes differ), or 0.
func firstDifference(ctx context.Context, a, b *Log, from, to uint64) (uint64, error) {
	nextA, stopA := iter.Pull2(a.hashes(ctx, from, to))
	defer stopA()
	nextB, stopB := iter.Pull2(b.hashes(ctx, from, to))
	defer stopB()
	for {
		pa, errA, okA := nextA()
		pb, errB, okB := nextB()
		if errA != nil {
			return 0, errA
		}
		if errB != nil {
			return 0, errB
		}
		switch {
		case !okA && !okB:
			return 0, nil
		case !okA:
			return pb.Seq, nil
		case !okB:
			return pa.Seq, nil
		case pa != pb:
			return min(pa.Seq, pb.Seq), nil
		}
	}
}

// hashes yields each event's position and [HashEvent] from position from
// to position to.
func (l *Log) hashes(ctx context.Context, from, to uint64) iter.Seq2[ChainPoint, error] {
	return func(yield func(ChainPoint, error) bool) {
		var eh eventHasher
		stop := errors.New("stop")
		err := l.scan(ctx, from, to, func(m *storedMsg) error {
			if !yield(ChainPoint{Seq: m.Seq, Hash: eh.event(m.Subject, m.Seq, m.Time, m.Header, m.Data)}, nil) {
				return stop
			}
			return nil
		})
		if err != nil && err != stop {
			yield(ChainPoint{}, err)
		}
	}
}
