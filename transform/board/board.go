package board

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// Defaults of [Options].
const (
	DefaultPoll       = time.Second
	DefaultHistory    = 5 * time.Minute
	DefaultMaxSamples = 600
	DefaultRejections = 20
)

// ErrInvalidOption is wrapped by errors of [New] about its arguments.
var ErrInvalidOption = errors.New("board: invalid option")

// Options configures a [Board]. The zero value means every default.
type Options struct {
	// Poll is how often the board reads the status board (default
	// DefaultPoll). Instances publish every 2s unless configured
	// otherwise: a sample is taken per status update seen.
	Poll time.Duration
	// History is how far back the samples of a DET go (default
	// DefaultHistory), MaxSamples how many it keeps at most (default
	// DefaultMaxSamples).
	History    time.Duration
	MaxSamples int
	// Rejections is how many of a DET's newest rejections it keeps
	// (default DefaultRejections).
	Rejections int
	// SnapshotBucket is where the DETs keep their snapshots (default
	// transform.DefaultSnapshotBucket).
	SnapshotBucket string
	// Logger receives the failures of background polls (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	httpapi.Default(&o.Poll, DefaultPoll)
	httpapi.Default(&o.History, DefaultHistory)
	httpapi.Default(&o.MaxSamples, DefaultMaxSamples)
	httpapi.Default(&o.Rejections, DefaultRejections)
	httpapi.Default(&o.SnapshotBucket, transform.DefaultSnapshotBucket)
	httpapi.Default(&o.Logger, slog.Default())
}

// Validate reports options that cannot work, wrapping [ErrInvalidOption].
func (o Options) Validate() error {
	var errs []error
	if o.Poll < 0 || o.History < 0 {
		errs = append(errs, fmt.Errorf("%w: negative Poll %v or History %v", ErrInvalidOption, o.Poll, o.History))
	}
	if o.MaxSamples < 0 || o.Rejections < 0 {
		errs = append(errs, fmt.Errorf("%w: negative MaxSamples %d or Rejections %d", ErrInvalidOption, o.MaxSamples, o.Rejections))
	}
	return errors.Join(errs...)
}

// Board follows the DETs of one log's stream. See the package
// documentation.
type Board struct {
	log    *transport.Log
	stream string
	opts   Options

	pollMu   sync.Mutex // one poll at a time; guards what polls keep below
	statuses *transform.StatusBoard
	snaps    *transform.SnapshotStore

	mu      sync.Mutex
	dets    map[string]*det // by ID
	order   []string        // IDs as the status board sorts them
	polled  time.Time
	pollErr error
}

// det is what the board holds of one DET generation.
type det struct {
	// Read by the views, under Board.mu.
	statuses   []transform.Status
	samples    []Sample
	snapshot   *Snapshot
	snapErr    string
	rejections Rejections

	// Kept by the polls, under Board.pollMu.
	snapSeen time.Time // the newest LastSnapshot the snapshot was read for
	snapRead bool
	rejSeen  uint64 // the most rejections an instance counted when they were read
	rejRead  bool
	rejCount uint64
	recent   []Rejected // oldest first
}

// New returns a board of log's stream; [Board.Start] polls it, or call
// [Board.Poll]. It returns an error wrapping [ErrInvalidOption] when log
// is nil or opts do not validate.
func New(log *transport.Log, opts Options) (*Board, error) {
	if log == nil {
		return nil, fmt.Errorf("%w: nil log", ErrInvalidOption)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Board{log: log, stream: log.Config().Stream, opts: opts, dets: map[string]*det{}}, nil
}

// Start polls the board every Options.Poll until ctx is done or stop is
// called; stop returns once the poll in flight has ended. Failures are
// logged and shown by the views.
func (b *Board) Start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(b.opts.Poll)
		defer tick.Stop()
		failing := false
		for {
			err := b.Poll(ctx)
			if err != nil && ctx.Err() == nil && !failing {
				b.opts.Logger.Warn("transforms board: reading the status board", "err", err)
			}
			failing = err != nil
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// Poll reads the status board once, and for each DET whose instances
// report a new snapshot or new rejections, those: the newest snapshot
// with its claims, and the newest rejection records. It takes a sample of
// each DET whose instances published since the last. Safe for concurrent
// use; polls run one at a time.
//
// Errors: those of reading the status board ([transport.ErrUnavailable]
// wrapped); the DETs then stay as the last poll left them. A DET's
// snapshot or rejections that cannot be read are reported in its view
// instead.
func (b *Board) Poll(ctx context.Context) error {
	b.pollMu.Lock()
	defer b.pollMu.Unlock()
	err := b.poll(ctx)
	b.mu.Lock()
	b.pollErr = err
	if err == nil {
		b.polled = time.Now().UTC()
	}
	b.mu.Unlock()
	return err
}

func (b *Board) poll(ctx context.Context) error {
	if b.statuses == nil {
		sb, ok, err := transform.BindStatusBoard(ctx, b.log)
		if err != nil || !ok {
			return err // no instance has published yet when !ok
		}
		b.statuses = sb
	}
	list, err := b.statuses.List(ctx, b.stream)
	if err != nil {
		return err
	}
	var order []string
	groups := map[string][]transform.Status{}
	for _, s := range list {
		id := transform.GenerationName(s.Name, s.Generation)
		if _, ok := groups[id]; !ok {
			order = append(order, id)
		}
		groups[id] = append(groups[id], s)
	}
	b.mu.Lock()
	for id := range b.dets {
		if _, ok := groups[id]; !ok {
			delete(b.dets, id) // its statuses expired
		}
	}
	b.order = order
	var news []*det
	for _, id := range order {
		d := b.dets[id]
		if d == nil {
			d = &det{statuses: groups[id]}
			b.dets[id] = d
		}
		news = append(news, d)
	}
	b.mu.Unlock()
	for i, id := range order {
		b.update(ctx, news[i], groups[id])
	}
	return nil
}

// update takes a DET's statuses, a sample, and reads its snapshot and
// rejections when its instances report new ones.
func (b *Board) update(ctx context.Context, d *det, sts []transform.Status) {
	var snapAt time.Time
	var rejected uint64
	for _, s := range sts {
		if s.LastSnapshot.After(snapAt) {
			snapAt = s.LastSnapshot
		}
		rejected = max(rejected, s.Rejections)
	}
	first := sts[0]
	var snap *Snapshot
	var snapErr error
	readSnap := !d.snapRead || snapAt.After(d.snapSeen)
	if readSnap {
		if snap, snapErr = b.readSnapshot(ctx, first); snapErr == nil {
			d.snapRead, d.snapSeen = true, snapAt
		}
	}
	var rejErr error
	if !d.rejRead || rejected != d.rejSeen {
		if rejErr = b.readRejections(ctx, d, first.Output); rejErr == nil {
			d.rejRead, d.rejSeen = true, rejected
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	d.statuses = sts
	switch {
	case snapErr != nil:
		d.snapErr = snapErr.Error()
	case readSnap:
		d.snapshot, d.snapErr = snap, ""
	}
	d.rejections = Rejections{ESK: transform.RejectionsESK(first.Output), Count: d.rejCount, Recent: newestFirst(d.recent)}
	if rejErr != nil {
		d.rejections.Error = rejErr.Error()
	}
	b.sample(d, sts)
}

// sample adds a sample of d when one of its instances published since
// the last one; under b.mu.
func (b *Board) sample(d *det, sts []transform.Status) {
	s := Sample{Won: make(map[string]uint64, len(sts))}
	for _, st := range sts {
		if st.Updated.After(s.Time) {
			s.Time = st.Updated
		}
		s.Outputs = max(s.Outputs, st.Outputs)
		s.Won[st.Instance] = st.Won
	}
	s.Lag = lagOf(sts, time.Now())
	if n := len(d.samples); n > 0 {
		prev := d.samples[n-1]
		if !s.Time.After(prev.Time) {
			return
		}
		if s.Outputs > prev.Outputs {
			s.OutputsPerSecond = round(float64(s.Outputs-prev.Outputs) / s.Time.Sub(prev.Time).Seconds())
		}
	}
	d.samples = append(d.samples, s)
	cut := 0
	for cut < len(d.samples) && (s.Time.Sub(d.samples[cut].Time) > b.opts.History || len(d.samples)-cut > b.opts.MaxSamples) {
		cut++
	}
	d.samples = slices.Delete(d.samples, 0, cut)
}

// lagOf is the least lag of a live instance, of any when none is.
func lagOf(sts []transform.Status, now time.Time) uint64 {
	lag, live := uint64(math.MaxUint64), false
	for _, s := range sts {
		state := s.State(now)
		isLive := state == transform.StateRunning || state == transform.StateObserver
		switch {
		case isLive && !live:
			lag, live = s.Lag, true
		case isLive == live:
			lag = min(lag, s.Lag)
		}
	}
	if lag == math.MaxUint64 {
		return 0
	}
	return lag
}

func round(f float64) float64 { return math.Round(f*100) / 100 }

// readSnapshot reads the newest snapshot of the generation s runs, and
// its claims; nil when there is none.
func (b *Board) readSnapshot(ctx context.Context, s transform.Status) (*Snapshot, error) {
	if b.snaps == nil {
		st, err := transform.OpenSnapshotStore(ctx, b.log, b.opts.SnapshotBucket)
		if err != nil {
			return nil, err
		}
		b.snaps = st
	}
	stored, ok, err := b.snaps.Newest(ctx, s.Name, s.Generation)
	if err != nil || !ok {
		return nil, err
	}
	claims, err := transform.Claims(ctx, b.log, s.Output, stored.InputSeq)
	if err != nil {
		return nil, err
	}
	v := &Snapshot{InputSeq: stored.InputSeq, Outputs: stored.Outputs, Rejections: stored.Rejections, Version: stored.Version,
		Hash: stored.Hash, Taken: stored.Taken, Object: stored.Object, ClaimsESK: transform.ClaimsESK(s.Output, stored.InputSeq),
		Claims: []Claim{}, ConfirmedBy: []string{}, ContradictedBy: []string{}}
	for _, c := range claims {
		agrees := c.Agrees(stored)
		v.Claims = append(v.Claims, Claim{By: c.By, Hash: c.Hash, Agrees: agrees})
		who := &v.ContradictedBy
		if agrees {
			who = &v.ConfirmedBy
		}
		if !slices.Contains(*who, c.By) {
			*who = append(*who, c.By)
		}
	}
	v.Confirmed = len(v.ConfirmedBy) > 0 && len(v.ContradictedBy) == 0
	return v, nil
}

// readRejections reads the records added to the generation's rejections
// ESK since the last read, keeping the newest.
func (b *Board) readRejections(ctx context.Context, d *det, output string) error {
	esk := transform.RejectionsESK(output)
	n, err := b.log.Count(ctx, esk)
	if err != nil {
		return err
	}
	if n < d.rejCount { // cannot happen on a log that denies deletes
		d.rejCount, d.recent = 0, nil
	}
	keep := uint64(b.opts.Rejections)
	for i := max(d.rejCount, n-min(n, keep)); i < n; i++ {
		ev, err := b.log.Get(ctx, esk, i)
		if err != nil {
			return err
		}
		d.recent = append(d.recent, rejected(ev))
		d.rejCount = i + 1
	}
	d.rejCount = n // also past records older than the newest kept
	if len(d.recent) > int(keep) {
		d.recent = slices.Delete(d.recent, 0, len(d.recent)-int(keep))
	}
	return nil
}

// rejected decodes a rejection record.
func rejected(ev transport.Event) Rejected {
	r := Rejected{Position: httpapi.ToPosition(ev.Position()), Time: ev.Stored.UTC()}
	var rec transform.Rejection
	if err := json.Unmarshal(ev.Data, &rec); err != nil || rec.Error == "" {
		r.Data = httpapi.ToData(ev.Data)
		r.Error = "not a rejection record"
		return r
	}
	r.Input = httpapi.Position{ESK: rec.Input.ESK, Index: rec.Input.Index, Seq: rec.Input.Seq}
	r.Error = rec.Error
	return r
}

func newestFirst(rs []Rejected) []Rejected {
	out := slices.Clone(rs)
	slices.Reverse(out)
	if out == nil {
		out = []Rejected{}
	}
	return out
}

// Overview returns every DET as last polled, sorted by name and
// generation, without their history.
func (b *Board) Overview() Overview {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	o := Overview{Stream: b.stream, Polled: b.polled, Transforms: make([]DET, 0, len(b.order))}
	if b.pollErr != nil {
		o.Error = b.pollErr.Error()
	}
	for _, id := range b.order {
		o.Transforms = append(o.Transforms, b.view(id, b.dets[id], now))
	}
	return o
}

// Get returns the DET of that ID ([DET.ID]) as last polled, with its
// history; ok is false when the board has no such DET.
func (b *Board) Get(id string) (v DET, ok bool) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dets[id]
	if d == nil {
		return DET{}, false
	}
	v = b.view(id, d, now)
	v.History = slices.Clone(d.samples)
	if v.History == nil {
		v.History = []Sample{}
	}
	return v, true
}

// view is d as the API shows it at now; under b.mu.
func (b *Board) view(id string, d *det, now time.Time) DET {
	first := d.statuses[0]
	v := DET{ID: id, Stream: first.Stream, Name: first.Name, Generation: max(first.Generation, 1), Output: first.Output,
		State: transform.StateStopped, Lag: lagOf(d.statuses, now), Instances: make([]Instance, 0, len(d.statuses)),
		Divergences: []transform.DivergenceError{}, Snapshot: d.snapshot, SnapshotError: d.snapErr, Rejections: d.rejections}
	for _, s := range d.statuses {
		in := Instance{Status: s, State: s.State(now), DivergenceCount: len(s.Divergences)}
		in.Divergences = nil
		if !s.Updated.IsZero() {
			in.HeartbeatAge = math.Round(now.Sub(s.Updated).Seconds()*10) / 10
		}
		v.Instances = append(v.Instances, in)
		v.Divergences = append(v.Divergences, s.Divergences...)
		v.Outputs = max(v.Outputs, s.Outputs)
		if s.Updated.After(v.Updated) {
			v.Updated = s.Updated
		}
		switch in.State {
		case transform.StateRunning, transform.StateObserver:
			v.State = transform.StateRunning
		case transform.StateStale:
			if v.State == transform.StateStopped {
				v.State = transform.StateStale
			}
		}
	}
	if n := len(d.samples); n > 0 {
		v.OutputsPerSecond = d.samples[n-1].OutputsPerSecond
	}
	return v
}
