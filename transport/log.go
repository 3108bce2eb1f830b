package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of [Config].
const (
	DefaultStream     = "EVENTS"
	DefaultPrefix     = "events"
	DefaultTimeout    = 10 * time.Second
	DefaultReplicas   = 1
	DefaultDuplicates = 2 * time.Minute
)

// Config configures a [Log]. The zero value means every default.
type Config struct {
	// Stream is the JetStream stream holding the log (default "EVENTS").
	Stream string
	// Prefix is the subject prefix: ESK "a.b" is subject "<Prefix>.a.b"
	// (default "events").
	Prefix string
	// Replicas is the stream's replication factor. 0 means 1 when the
	// stream is created and leaves an existing stream's factor alone; a
	// non-zero value also changes an existing stream's (3 on a
	// three-node cluster).
	Replicas int
	// MaxPayload bounds one event's payload in bytes (default
	// DefaultMaxPayload, NATS's own max_payload). It is also the stream's
	// max message size.
	MaxPayload int
	// Timeout is the deadline applied to calls whose ctx has none
	// (default 10s).
	Timeout time.Duration
	// Clock stamps writes made with [WithHLC] (or all, with StampHLC) with
	// HLC time (default: a wall clock with a 500ms bound on remote skew).
	Clock *hlc.Clock
	// StampHLC stamps every write and conditional append with HLC time,
	// as if each had [WithHLC].
	StampHLC bool
	// Tracer and Propagator carry OpenTelemetry spans; defaults are the
	// global tracer provider and W3C trace context plus baggage.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// NoProvision skips creating or updating the stream: the log binds to
	// an existing stream, for users whose credentials may not manage
	// streams.
	NoProvision bool
	// Site, when set, opens that site's own log (see [SiteConfig]): the
	// stream "<Stream>_<Site>" with subjects "<Prefix>.<Site>.>", placed
	// on the site's servers. After defaults, Stream and Prefix are these.
	Site string

	copyOf, copyAt string // a copy of copyOf's log held at copyAt
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Site != "" {
		if !strings.HasSuffix(c.Stream, "_"+c.Site) {
			c.Stream += "_" + c.Site
		}
		if !strings.HasSuffix(c.Prefix, "."+c.Site) {
			c.Prefix += "." + c.Site
		}
	}
	if c.Clock == nil {
		c.Clock = hlc.NewClock(nil, 500*time.Millisecond)
		if c.Site != "" {
			c.Clock = hlc.NewClock(nil, MaxClockLead)
		}
	}
	if c.Tracer == nil {
		c.Tracer = otel.Tracer("github.com/detbus/detbus/transport")
	}
	if c.Propagator == nil {
		c.Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
}

// Validate reports every problem with the config, joined. It applies to a
// config after defaults.
func (c Config) Validate() error {
	var errs []error
	if strings.ContainsAny(c.Stream, " .*>\t\r\n") {
		errs = append(errs, fmt.Errorf("%w: stream name %q contains '.', '*', '>' or whitespace", ErrInvalidOption, c.Stream))
	}
	if err := ValidateESK(c.Prefix); err != nil {
		errs = append(errs, fmt.Errorf("%w: prefix: %v", ErrInvalidOption, err))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("%w: replicas %d is not in 0..5", ErrInvalidOption, c.Replicas))
	}
	if c.MaxPayload < 1 || c.MaxPayload > 64<<20 {
		errs = append(errs, fmt.Errorf("%w: max payload %d is not in 1..64MiB", ErrInvalidOption, c.MaxPayload))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative timeout %v", ErrInvalidOption, c.Timeout))
	}
	if c.Site != "" {
		if err := ValidateSiteName(c.Site); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Log is the distributed event log: one append-only log per ESK, kept in
// one JetStream stream. A Log is safe for concurrent use. What it
// remembers is bounded whatever the log's length: at most 32 facts
// (index, stream sequence) for each of at most 4096 ESKs, the least
// recently used forgotten first (under 2 MiB); see the package
// documentation for how indices are learned.
type Log struct {
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      jetstream.Stream
	cfg         Config
	gets        *directGetter
	facts       *factCache
	replicas    atomic.Int64  // the stream's replicas, as last seen
	noTrace     atomic.Bool   // the servers do not trace direct gets
	delivered   atomic.Uint64 // events delivered by Events
	noConsumers atomic.Bool   // the user may not create consumers: read with direct gets
	site        siteState
	clockFeed   *clockFeed // a copy feeds the site's clock
	async       asyncWriter
	runReplies  runReplies
	denied      denials

	closeOnce sync.Once
	ownConn   bool
}

// Open binds a Log to a NATS connection and provisions its stream
// idempotently (unless cfg.NoProvision): subjects "<Prefix>.>", file
// storage, delete, purge and rollup denied, direct gets allowed, the
// message size bounded by MaxPayload. A stream that exists with other
// settings is updated where NATS allows it.
//
// Errors: [ErrInvalidOption] for a bad config, [ErrUnavailable] when
// JetStream does not answer.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	l := &Log{nc: nc, js: js, cfg: cfg, facts: newFactCache(cfg.Prefix)}
	if cfg.copyOf != "" {
		l.clockFeed = &clockFeed{}
	}
	l.denied.hook(nc)
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	if !cfg.NoProvision {
		if err := l.provision(ctx); err != nil {
			return nil, err
		}
	}
	if l.stream, err = js.Stream(ctx, cfg.Stream); err != nil {
		return nil, fmt.Errorf("%w: stream %q: %v", ErrUnavailable, cfg.Stream, err)
	}
	l.replicas.Store(int64(l.stream.CachedInfo().Config.Replicas))
	// A site reads with direct gets: consumers need the metadata that
	// every site shares, out of reach during a partition.
	l.noConsumers.Store(cfg.Site != "" || cfg.copyOf != "" || !l.mayCreateConsumers(ctx))
	l.gets, err = newDirectGetter(nc, cfg.Stream)
	if err != nil {
		return nil, err
	}
	l.gets.denied = &l.denied
	return l, nil
}

// Connect dials NATS at urls (comma-separated) and opens a Log on the
// connection; [Log.Close] closes the connection too.
func Connect(ctx context.Context, urls string, cfg Config, opts ...nats.Option) (*Log, error) {
	opts = append([]nats.Option{nats.Name("detbus"), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		if isAuthError(err) {
			return nil, fmt.Errorf("%w: connect to %s: %v", ErrForbidden, urls, err)
		}
		return nil, fmt.Errorf("%w: connect to %s: %v", ErrUnavailable, urls, err)
	}
	l, err := Open(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	l.ownConn = true
	return l, nil
}

func (l *Log) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               l.cfg.Stream,
		Description:        "detbus distributed event log",
		Subjects:           []string{l.cfg.Prefix + ".>"},
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Replicas:           max(l.cfg.Replicas, DefaultReplicas),
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         int32(l.cfg.MaxPayload + 4096), // payload plus headers
		Discard:            jetstream.DiscardNew,
		Duplicates:         DefaultDuplicates,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowRollup:        false,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		AllowBatchPublish:  true,
		Placement:          l.placement(),
	}
}

func (l *Log) provision(ctx context.Context) error {
	want := l.streamConfig()
	s, err := l.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = l.js.CreateStream(ctx, want)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("%w: create stream %q: %v", ErrUnavailable, want.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%w: stream %q: %v", ErrUnavailable, want.Name, err)
	}
	have := s.CachedInfo().Config
	if l.cfg.Replicas == 0 {
		want.Replicas = have.Replicas // keep the existing factor
	}
	if have.DenyDelete && have.DenyPurge && !have.AllowRollup && have.AllowDirect && have.RePublish == nil &&
		have.AllowAtomicPublish && have.AllowBatchPublish && have.Duplicates >= MinDuplicates &&
		have.MaxMsgSize == want.MaxMsgSize && have.Replicas == want.Replicas &&
		len(have.Subjects) == 1 && have.Subjects[0] == want.Subjects[0] {
		return nil
	}
	if _, err := l.js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("transport: stream %q exists with other settings and cannot be updated: %w", want.Name, err)
	}
	return nil
}

// Config returns the log's config with defaults applied.
func (l *Log) Config() Config { return l.cfg }

// Conn returns the NATS connection.
func (l *Log) Conn() *nats.Conn { return l.nc }

// JetStream returns the JetStream handle the log uses.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Subject is the NATS subject of a (valid) ESK.
func (l *Log) Subject(esk string) string { return l.cfg.Prefix + "." + esk }

// ESKOf returns the ESK of a subject under the log's prefix.
func (l *Log) ESKOf(subject string) (string, bool) {
	p := l.cfg.Prefix + "."
	if !strings.HasPrefix(subject, p) || len(subject) == len(p) {
		return "", false
	}
	return subject[len(p):], true
}

// Close releases the log's subscriptions, and its connection if it was
// made by [Connect]. It is safe to call more than once.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.gets.close()
		l.runReplies.close()
		l.async.once.Do(func() { l.async.stop = make(chan struct{}) })
		close(l.async.stop)
		if l.ownConn {
			l.nc.Close()
		}
	})
	return nil
}

func (l *Log) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, l.cfg.Timeout)
}

// esk returns what the log knows of esk.
func (l *Log) esk(esk string) *eskFacts { return l.facts.get(esk) }
