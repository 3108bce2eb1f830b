package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotOwner is wrapped by the error of a write to a copy of another
// site's log: only the owner writes its ESKs (see [Log.Owner]).
var ErrNotOwner = errors.New("transport: the log is a copy of another site's")

// A Log opened with [Config.Site] is a site's own log: the stream
// "<Stream>_<site>" with subjects "<Prefix>.<site>.>", placed on the
// site's servers, read with direct gets (no consumers, which need the
// metadata shared by every site), with buckets of its own
// ("<bucket>-<site>"). The site owns the ESKs of its log: writes,
// conditional appends, DETs and task claims on them need only the site.
//
// A site holds a copy of every other site's log, the stream
// "<Stream>_<origin>_AT_<site>", a JetStream mirror of the origin that
// keeps its sequences and stored times. [Log.Copy] reads one with the
// same calls as the own log, from this site, whatever the link to the
// origin; it is behind the origin by what the link has not carried yet
// ([Log.Copies] says how far), and refuses writes with [ErrNotOwner].
// [Log.Owner] opens the origin's own log through the gateways: its writes
// land at the origin, and conditional appends are exact (the origin's
// stream checks their expectation), and fail with [ErrUnavailable] while
// the origin is out of reach. Its reads by direct get may be answered by
// this site's copy, as far as it has come: JetStream lets a mirror answer
// its origin's direct gets, and prefers the local one.

// siteState is what a site's Log remembers of the other sites.
type siteState struct {
	mu      sync.Mutex
	origins []string // the other sites whose copies exist here, as last listed
}

// Site returns the name of the site whose log this is ("" outside the
// site mode; for a copy, the site that holds it).
func (l *Log) Site() string {
	if l.cfg.copyOf != "" {
		return l.cfg.copyAt
	}
	return l.cfg.Site
}

// CopyOf returns the origin site of a copy ("" for an own log).
func (l *Log) CopyOf() string { return l.cfg.copyOf }

// siteBase returns the stream and prefix that name every site's log.
func (c Config) siteBase() (stream, prefix string) {
	if c.Site == "" {
		return c.Stream, c.Prefix
	}
	return strings.TrimSuffix(c.Stream, "_"+c.Site), strings.TrimSuffix(c.Prefix, "."+c.Site)
}

// SiteStream is the stream of site's own log, for a log whose base stream
// is base ("" for DefaultStream).
func SiteStream(base, site string) string {
	if base == "" {
		base = DefaultStream
	}
	return base + "_" + site
}

// CopyStream is the stream that holds origin's log at site.
func CopyStream(base, origin, site string) string {
	return SiteStream(base, origin) + "_AT_" + site
}

func (l *Log) siteBucket(name string) string {
	if s := l.Site(); s != "" {
		return name + "-" + s
	}
	return name
}

func (l *Log) placement() *jetstream.Placement {
	if s := l.Site(); s != "" {
		return &jetstream.Placement{Cluster: s}
	}
	return nil
}

func (l *Log) requireSite() error {
	if l.cfg.Site == "" {
		return fmt.Errorf("%w: stream %s is not a site's own log (open it with Config.Site)", ErrInvalidOption, l.cfg.Stream)
	}
	return nil
}

// Origins lists the other sites whose logs exist, by listing the streams
// (which needs a majority of the sites: while it has none, the origins
// last listed are returned with the error).
func (l *Log) Origins(ctx context.Context) ([]string, error) {
	if err := l.requireSite(); err != nil {
		return nil, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	base, _ := l.cfg.siteBase()
	names := l.js.StreamNames(ctx)
	var found []string
	for n := range names.Name() {
		rest, ok := strings.CutPrefix(n, base+"_")
		if ok && rest != l.cfg.Site && ValidateSiteName(rest) == nil {
			found = append(found, rest)
		}
	}
	if err := names.Err(); err != nil {
		return l.knownOrigins(), fmt.Errorf("%w: list the sites: %v", ErrUnavailable, err)
	}
	slices.Sort(found)
	l.site.mu.Lock()
	for _, o := range found {
		if !slices.Contains(l.site.origins, o) {
			l.site.origins = append(l.site.origins, o)
		}
	}
	slices.Sort(l.site.origins)
	l.site.mu.Unlock()
	return found, nil
}

func (l *Log) knownOrigins() []string {
	l.site.mu.Lock()
	defer l.site.mu.Unlock()
	return slices.Clone(l.site.origins)
}

// SyncCopies makes this site's copy of every other site's log that has
// none yet, and returns the origins. It needs a majority of the sites
// (creating a stream does); copies that exist follow their origins
// without it. A node calls it periodically, so that a site that appears
// is copied.
func (l *Log) SyncCopies(ctx context.Context) ([]string, error) {
	origins, err := l.Origins(ctx)
	if err != nil {
		return origins, err
	}
	ctx, cancel := l.withTimeout(ctx)
	defer cancel()
	base, _ := l.cfg.siteBase()
	var errs []error
	for _, o := range origins {
		name := CopyStream(base, o, l.cfg.Site)
		if _, err := l.js.Stream(ctx, name); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("%w: copy of %s: %v", ErrUnavailable, o, err))
			continue
		}
		_, err := l.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: "detbus: the log of site " + o + " as held at " + l.cfg.Site,
			Mirror:      &jetstream.StreamSource{Name: SiteStream(base, o)},
			Storage:     jetstream.FileStorage,
			Replicas:    max(int(l.replicas.Load()), 1),
			Placement:   l.placement(),
			MaxMsgs:     -1, MaxBytes: -1, MaxMsgsPerSubject: -1,
			MaxMsgSize:  int32(l.cfg.MaxPayload + 4096),
			DenyDelete:  true,
			DenyPurge:   true,
			AllowDirect: true,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			errs = append(errs, fmt.Errorf("%w: make the copy of %s: %v", ErrUnavailable, o, err))
		}
	}
	return origins, errors.Join(errs...)
}

// CopyStatus is the state of this site's copy of another site's log.
type CopyStatus struct {
	Origin string `json:"origin"`
	Stream string `json:"stream"`
	// Events and LastSeq are what the copy holds (its sequences are the
	// origin's); LastTime is when the origin stored the newest of them.
	Events   uint64    `json:"events"`
	LastSeq  uint64    `json:"last_seq"`
	LastTime time.Time `json:"last_time,omitzero"`
	// Lag is how many events the origin had that the copy had not, when
	// they last spoke; Contact is how long ago that was (-1 before any).
	Lag     uint64        `json:"lag"`
	Contact time.Duration `json:"contact_ns"`
	// When the origin answered just now: its last sequence, and how long
	// ago it stored the oldest event the copy does not hold yet (0 when
	// the copy is complete): the copy's lag in time.
	OriginReachable bool          `json:"origin_reachable"`
	OriginSeq       uint64        `json:"origin_seq,omitempty"`
	Behind          time.Duration `json:"behind_ns"`
	Error           string        `json:"error,omitempty"`
}

// Copies reports this site's copies of the other sites' logs, sorted by
// origin. It asks each copy (answered at this site) and each origin (with
// a short deadline: an origin out of reach shows as not reachable). The
// origins are the ones [Log.Origins] lists, or while no majority answers
// the ones last listed.
func (l *Log) Copies(ctx context.Context) ([]CopyStatus, error) {
	if err := l.requireSite(); err != nil {
		return nil, err
	}
	origins, lerr := l.Origins(ctx)
	if lerr != nil && len(origins) == 0 {
		return nil, lerr
	}
	base, _ := l.cfg.siteBase()
	out := make([]CopyStatus, len(origins))
	var wg sync.WaitGroup
	for i, o := range origins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = l.copyStatus(ctx, base, o)
		}()
	}
	wg.Wait()
	return out, nil
}

func (l *Log) copyStatus(ctx context.Context, base, origin string) CopyStatus {
	cs := CopyStatus{Origin: origin, Stream: CopyStream(base, origin, l.cfg.Site), Contact: -1}
	cctx, cancel := l.withTimeout(ctx)
	defer cancel()
	s, err := l.js.Stream(cctx, cs.Stream)
	if err != nil {
		cs.Error = "no copy here yet: " + err.Error()
		return cs
	}
	info := s.CachedInfo()
	cs.Events, cs.LastSeq, cs.LastTime = info.State.Msgs, info.State.LastSeq, info.State.LastTime
	if m := info.Mirror; m != nil {
		cs.Lag, cs.Contact = m.Lag, m.Active
		if m.Error != nil {
			cs.Error = m.Error.Error()
		}
	}
	octx, ocancel := context.WithTimeout(ctx, time.Second)
	defer ocancel()
	os, err := l.js.Stream(octx, SiteStream(base, origin))
	if err != nil {
		return cs
	}
	cs.OriginReachable = true
	cs.OriginSeq = os.CachedInfo().State.LastSeq
	if cs.OriginSeq > cs.LastSeq {
		cs.Lag = cs.OriginSeq - cs.LastSeq
		if rep, err := l.directOn(octx, SiteStream(base, origin), directGetRequest{NextFor: ">", Seq: cs.LastSeq + 1, NoHeaders: true}); err == nil && len(rep.msgs) > 0 {
			cs.Behind = max(time.Since(rep.msgs[0].Time), 0)
		}
	} else {
		cs.Lag = 0
	}
	return cs
}

// Copy opens this site's copy of origin's log: a read-only Log on the
// same connection, whose ESKs are the origin's ("orders.eu" is the
// origin's "orders.eu"). Reads answer from this site; writes fail with
// [ErrNotOwner]. Closing it leaves the connection open.
//
// Errors: [ErrNotFound] when this site holds no copy of origin (yet).
func (l *Log) Copy(ctx context.Context, origin string) (*Log, error) {
	if err := l.requireSite(); err != nil {
		return nil, err
	}
	if err := ValidateSiteName(origin); err != nil {
		return nil, err
	}
	if origin == l.cfg.Site {
		return nil, fmt.Errorf("%w: %s is this site: use its own log", ErrInvalidOption, origin)
	}
	base, prefix := l.cfg.siteBase()
	cfg := l.cfg
	cfg.Site = ""
	cfg.Stream = CopyStream(base, origin, l.cfg.Site)
	cfg.Prefix = prefix + "." + origin
	cfg.NoProvision = true
	cfg.copyOf, cfg.copyAt = origin, l.cfg.Site
	c, err := Open(ctx, l.nc, cfg)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && strings.Contains(err.Error(), "not found") {
			return nil, fmt.Errorf("%w: site %s holds no copy of site %s", ErrNotFound, l.cfg.Site, origin)
		}
		return nil, err
	}
	return c, nil
}

// Owner opens origin's own log through the gateways, on the same
// connection: for the calls that need the owner (conditional appends,
// task claims), which fail with [ErrUnavailable] while the origin is out
// of reach. Reads by direct get may be answered by this site's copy (see
// the package documentation on sites). Closing it leaves the connection
// open.
func (l *Log) Owner(ctx context.Context, origin string) (*Log, error) {
	if err := l.requireSite(); err != nil {
		return nil, err
	}
	if err := ValidateSiteName(origin); err != nil {
		return nil, err
	}
	if origin == l.cfg.Site {
		return l, nil
	}
	cfg := l.cfg
	base, prefix := l.cfg.siteBase()
	cfg.Site = origin
	cfg.Stream, cfg.Prefix = base, prefix
	cfg.NoProvision = true
	return Open(ctx, l.nc, cfg)
}
