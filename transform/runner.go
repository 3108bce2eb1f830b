package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/transport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DivergencePolicy says what an instance does when the output that landed
// at an index differs from its own.
type DivergencePolicy int

const (
	// StopOnDivergence (the default) makes [Runner.Run] return the
	// [*DivergenceError]: the instance's state can no longer be trusted.
	StopOnDivergence DivergencePolicy = iota
	// ObserveOnDivergence keeps the instance running as an observer that
	// never writes again but keeps computing and comparing, reporting
	// every further divergence.
	ObserveOnDivergence
)

// ErrDivergence is wrapped by [*DivergenceError].
var ErrDivergence = errors.New("transform: divergence")

// DivergenceError reports that the output at Index differs from this
// instance's: some instance is not deterministic, or runs other logic.
type DivergenceError struct {
	What      string `json:"what"` // "output", or "snapshot" when two instances' snapshots of one position differ
	Name      string `json:"name"`
	Instance  string `json:"instance"`
	Index     uint64 `json:"index"`     // output index
	InputESK  string `json:"input_esk"` // the input that caused the output
	InputSeq  uint64 `json:"input_seq"`
	OwnHash   string `json:"own_sha256"`    // sha256 of this instance's output
	FoundHash string `json:"landed_sha256"` // sha256 of the output that landed
}

func (e *DivergenceError) Error() string {
	return fmt.Sprintf("transform: %s divergence in %s (instance %s) at output %d from input %s seq %d: own sha256 %s, landed sha256 %s",
		e.What, e.Name, e.Instance, e.Index, e.InputESK, e.InputSeq, short(e.OwnHash), short(e.FoundHash))
}

// Unwrap makes errors.Is(err, ErrDivergence) true.
func (e *DivergenceError) Unwrap() error { return ErrDivergence }

func short(h string) string { return h[:min(len(h), 16)] }

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Config configures a [Runner].
type Config struct {
	Spec     Spec
	Log      *transport.Log
	Instance string // a name for this instance in logs, metrics and status
	// OnDivergence is the divergence policy (default StopOnDivergence).
	OnDivergence DivergencePolicy
	// Snapshots, if set, is where the runner restores from at start and
	// saves to every SnapshotEvery inputs (default 1000) or
	// SnapshotInterval (default 1m), whichever comes first.
	Snapshots        *SnapshotStore
	SnapshotEvery    int
	SnapshotInterval time.Duration
	// Deference is how long an instance that lost the previous output
	// waits for the next one to land before publishing it itself
	// (default 2ms). The instance that won last never waits, so racing
	// costs the winner nothing, and a dead or stalled winner delays one
	// output by at most Deference. Negative: never wait.
	Deference time.Duration
	// Board, if set, receives the instance's [Status] every
	// StatusInterval (default 2s), on a divergence and when it stops.
	Board          *StatusBoard
	StatusInterval time.Duration
	Logger         *slog.Logger

	// Shadow runs the instance as a shadow: it reads the inputs and
	// computes its outputs as any instance, but never writes anything
	// (outputs, rejections, claims, snapshots): it compares each output
	// with the one that landed and counts the matches and mismatches,
	// keeping the first mismatch, without stopping. It starts from the
	// first input. This is how a new version proves it computes what the
	// running one does before it races. Snapshots is ignored.
	Shadow bool

	// Generation numbers the DET's output log. After a divergence the
	// output of the DET can no longer be extended by any instance; to go
	// on, run the DET as its next generation: generation N (2 or more)
	// writes to "<output>.g<N>" (see [GenerationOutput]), with its own
	// rejections, claims and snapshots, and leaves the older generations'
	// output as it is, for audit. 0 and 1 are the first generation.
	Generation uint
	// StartAfter is where a new generation starts, when it has no
	// snapshot of its own yet: 0 for the first input, with an empty
	// state; otherwise an input position at which the previous
	// generation holds a snapshot the log confirms, whose state the new
	// generation starts from (with its outputs counted from 0). It needs
	// Snapshots, and a Generation of 2 or more.
	StartAfter uint64
}

// GenerationOutput is the output ESK of generation gen of a DET whose
// first generation writes to output.
func GenerationOutput(output string, gen uint) string {
	if gen <= 1 {
		return output
	}
	return output + ".g" + strconv.FormatUint(uint64(gen), 10)
}

// generationName is the name under which generation gen of the DET
// name keeps its snapshots.
func generationName(name string, gen uint) string {
	if gen <= 1 {
		return name
	}
	return name + ".g" + strconv.FormatUint(uint64(gen), 10)
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		c.Instance = "instance"
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 1000
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Deference == 0 {
		c.Deference = 2 * time.Millisecond
	}
	if c.StatusInterval == 0 {
		c.StatusInterval = 2 * time.Second
	}
}

// Validate reports every problem with the config, joined.
func (c Config) Validate() error {
	var errs []error
	s := c.Spec
	if s.Name == "" || strings.ContainsAny(s.Name, ".*> ") {
		errs = append(errs, fmt.Errorf("%w: spec name %q must be non-empty without '.', '*', '>' or spaces", transport.ErrInvalidOption, s.Name))
	}
	if s.New == nil {
		errs = append(errs, fmt.Errorf("%w: spec %q has no New", transport.ErrInvalidOption, s.Name))
	}
	if len(s.Inputs) == 0 {
		errs = append(errs, fmt.Errorf("%w: spec %q has no inputs", transport.ErrInvalidOption, s.Name))
	}
	for _, p := range s.Inputs {
		if err := transport.ValidateESKPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("input: %w", err))
		} else if matches(p, s.Output) || matches(p, rejectionsESK(s)) || matches(p, ClaimsESK(s.Output, 1)) {
			errs = append(errs, fmt.Errorf("%w: input %q matches the output %q: a DET would read its own output", transport.ErrInvalidOption, p, s.Output))
		}
	}
	if err := transport.ValidateESK(s.Output); err != nil {
		errs = append(errs, fmt.Errorf("output: %w", err))
	}
	if c.Log == nil {
		errs = append(errs, fmt.Errorf("%w: no Log", transport.ErrInvalidOption))
	}
	if c.SnapshotEvery < 0 || c.SnapshotInterval < 0 {
		errs = append(errs, fmt.Errorf("%w: negative snapshot period", transport.ErrInvalidOption))
	}
	if c.StartAfter > 0 && (c.Generation < 2 || c.Snapshots == nil) {
		errs = append(errs, fmt.Errorf("%w: a start position is for a new generation (2 or more) with snapshots, where the previous generation's snapshot at it holds the state", transport.ErrInvalidOption))
	}
	return errors.Join(errs...)
}

// matches reports whether the ESK pattern p matches the literal esk.
func matches(p, esk string) bool {
	pt, et := strings.Split(p, "."), strings.Split(esk, ".")
	for i, tok := range pt {
		switch {
		case tok == ">":
			return len(et) > i
		case i >= len(et):
			return false
		case tok != "*" && tok != et[i]:
			return false
		}
	}
	return len(pt) == len(et)
}

// rejectionsESK is where the runner records inputs the DET rejected.
func rejectionsESK(s Spec) string { return s.Output + ".rejected" }

// Status is a runner's progress.
type Status struct {
	Stream     string `json:"stream"` // the log's stream
	Name       string `json:"name"`
	Generation uint   `json:"generation,omitempty"` // 2 or more for a later generation
	Output     string `json:"output"`               // the generation's output ESK
	Instance   string `json:"instance"`
	InputSeq   uint64 `json:"input_seq"` // the last input applied
	Lag        uint64 `json:"lag"`       // stream positions from InputSeq to the newest input
	Inputs     uint64 `json:"inputs"`    // inputs applied by this run
	Outputs    uint64 `json:"outputs"`   // the output count
	Won        uint64 `json:"won"`       // outputs this instance wrote
	Lost       uint64 `json:"lost"`      // outputs it found written, equal to its own
	Batches    uint64 `json:"batches"`   // atomic batches it wrote (their outputs count in Won)
	Rejections uint64 `json:"rejections"`
	Pending    uint64 `json:"pending"`  // outputs and rejections stepped, not settled yet
	Observer   bool   `json:"observer"` // after a divergence under ObserveOnDivergence
	Version    string `json:"version"`
	// Shadow instances count the outputs they compared: equal to the one
	// that landed, or not (the first such is kept).
	Shadow        bool              `json:"shadow,omitempty"`
	Matches       uint64            `json:"matches,omitempty"`
	Mismatches    uint64            `json:"mismatches,omitempty"`
	FirstMismatch *DivergenceError  `json:"first_mismatch,omitempty"`
	Stopped       string            `json:"stopped,omitempty"`
	Divergences   []DivergenceError `json:"divergences,omitempty"`
	LastSnapshot  time.Time         `json:"last_snapshot,omitzero"`
	Updated       time.Time         `json:"updated,omitzero"` // when it was published
	// Every is how often the instance publishes its status while it
	// runs: its heartbeat.
	Every time.Duration `json:"every_ns,omitempty"`
}

// Stale reports a status that says running but whose heartbeat stopped:
// not published for three of its intervals (the process was killed, or
// lost NATS).
func (s Status) Stale(now time.Time) bool {
	return s.Stopped == "" && !s.Updated.IsZero() && now.Sub(s.Updated) > 3*max(s.Every, time.Second)
}

// Runner runs one instance of a DET.
type Runner struct {
	cfg       Config
	first     Spec          // the spec as given: the first generation's
	snapSpec  Spec          // the spec under which this generation's snapshots are kept
	published chan struct{} // asks the status publisher to publish now
	attrs     []attribute.KeyValue
	measured  metric.MeasurementOption // attrs, for counters
	head      atomic.Uint64            // the stream's last sequence, refreshed while running
	landed    landedOutputs            // outputs other instances wrote, not compared yet
	lostLast  bool                     // the last output was written by another instance (the committer's goroutine only)
	pending   atomic.Int64             // outputs handed to the committer, not settled yet
	// wrapInputs, set by tests, changes the inputs Run reads.
	wrapInputs func(iter.Seq2[transport.Event, error]) iter.Seq2[transport.Event, error]

	mu     sync.Mutex
	status Status
}

// NewRunner checks cfg and returns a runner; [Runner.Run] starts it.
func NewRunner(cfg Config) (*Runner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A later generation is the DET with another output; its snapshots
	// go under another name.
	if cfg.Shadow {
		cfg.Snapshots = nil
	}
	first := cfg.Spec
	cfg.Spec.Output = GenerationOutput(first.Output, cfg.Generation)
	snapSpec := cfg.Spec
	snapSpec.Name = generationName(first.Name, cfg.Generation)
	attrs := runnerAttrs(cfg)
	return &Runner{cfg: cfg, first: first, snapSpec: snapSpec, published: make(chan struct{}, 1), attrs: attrs, measured: metric.WithAttributes(attrs...),
		status: Status{Stream: cfg.Log.Config().Stream, Name: cfg.Spec.Name, Generation: max(cfg.Generation, 1), Output: cfg.Spec.Output,
			Instance: cfg.Instance, Every: cfg.StatusInterval, Version: cfg.Spec.Version, Shadow: cfg.Shadow}}, nil
}

// Status returns a copy of the runner's progress; safe to call while it
// runs.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Pending = uint64(max(0, r.pending.Load()))
	if head := r.head.Load(); head > s.InputSeq {
		s.Lag = head - s.InputSeq
	}
	s.Divergences = append([]DivergenceError(nil), s.Divergences...)
	if s.FirstMismatch != nil {
		m := *s.FirstMismatch
		s.FirstMismatch = &m
	}
	return s
}

func (r *Runner) update(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}
