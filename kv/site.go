package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// A Store opened on a site's own log (transport.Config.Site) folds every
// site's log: its own and the copies it holds of the others'. Their
// events are merged in one order that every site computes alike, so two
// sites that hold the same events hold byte-identical state whatever
// order the events arrived in:
//
//   - An event's key is (M, site, seq): M is the greatest HLC time of its
//     own site's log up to and including it, so each log keeps its own
//     order; ties go to the site's name, then the sequence.
//   - Positions, dots and counter writers name the site: the op at
//     index 3 of ESK kv.users written at site a is "a:kv.users"@3, so a
//     last-writer-wins tie goes to the greater HLC time, then the site.
//   - Every rule that reads "at the op's log position" (a declaration
//     stays if it is the first; an op needs a declared table; a remove
//     without "observed" removes what is present) reads it at the op's
//     place in the merged order. Two sites that declare the same table
//     with different types concurrently both end with the declaration
//     that comes first in that order: the other is rejected, visibly, in
//     the _config table's rejections, as are the loser's ops that its
//     type does not take.
//
// An event from another site usually arrives after later events of this
// one. The Store keeps, for each event that an event still to come may
// precede (every site's log has an event past the others), what undoes
// it: an event that arrives late is applied at its place by undoing the
// events after it and applying them again. The work is the events after
// its place, not the size of the state; what is kept grows while a site
// is cut off or idle. Sites' nodes write a tick to their own log every
// second (ESK kv._site, see [Store.Tick]), so that an idle site does not
// hold the others back.
//
// A Store at a site restores the newest valid snapshot of the site's kv
// (see encodeSite) and folds what follows in every log; it folds the
// sites whose copies exist when it opens.

// SiteTickESK is the ESK of the ticks sites write to their own log: they
// hold no op, and say that the site's log has nothing earlier to come.
const SiteTickESK = ESKPrefix + "_site"

// siteKey orders events of several sites' logs.
type siteKey struct {
	m    hlc.Timestamp
	site string
	seq  uint64
}

func (k siteKey) less(o siteKey) bool {
	if c := k.m.Compare(o.m); c != 0 {
		return c < 0
	}
	if k.site != o.site {
		return k.site < o.site
	}
	return k.seq < o.seq
}

type pendingEvent struct {
	key   siteKey
	ev    event
	src   int
	tick  bool          // a tick: it orders, and changes nothing
	prevM hlc.Timestamp // its source's greatest time before it
}

// siteFold merges the sites' logs into the Store's state, in key order.
// The events that an event still to come may precede (pending) stay
// applied with what undoes each, so that an event that arrives late is
// applied at its place by undoing the pending events after it and
// applying them again.
type siteFold struct {
	sites    []string        // by source
	maxT     []hlc.Timestamp // the greatest time of each source so far
	last     []siteKey       // the key of each source's last event
	seen     []uint64        // the last sequence received of each source
	pending  []pendingEvent  // applied, sorted by key
	undos    []undoRec       // what undoes each pending event
	point    siteKey         // the state's snapshot point: its own log's last event that nothing can precede
	reorders uint64          // batches that fell before pending events
	undone   uint64          // events undone and applied again
}

func newSiteFold(sites []string) *siteFold {
	n := len(sites)
	return &siteFold{sites: sites, maxT: make([]hlc.Timestamp, n), last: make([]siteKey, n), seen: make([]uint64, n)}
}

// qualify names the event's site in its position.
func qualify(site string, ev event) event {
	ev.pos.ESK = site + ":" + ev.pos.ESK
	return ev
}

// tableOf is the table an ESK names, "<site>:kv.<table>" or
// "kv.<table>".
func tableOf(esk string) string {
	if !strings.HasPrefix(esk, ESKPrefix) {
		if _, rest, ok := strings.Cut(esk, ":"); ok {
			esk = rest
		}
	}
	return strings.TrimPrefix(esk, ESKPrefix)
}

func comparePending(a, b pendingEvent) int {
	switch {
	case a.key.less(b.key):
		return -1
	case b.key.less(a.key):
		return 1
	}
	return 0
}

// receive merges a batch of source src's events into st and returns the
// results of the batch's events by sequence.
func (sf *siteFold) receive(st *state, src int, evs []transport.Event) map[uint64]result {
	res := make(map[uint64]result, len(evs))
	var added []pendingEvent
	lo := len(sf.pending)
	for i := range evs {
		tev := &evs[i]
		if tev.Seq <= sf.seen[src] {
			continue // delivered again after a read failed
		}
		sf.seen[src] = tev.Seq
		prevM := sf.maxT[src]
		if sf.maxT[src].Less(tev.Time) {
			sf.maxT[src] = tev.Time
		}
		k := siteKey{m: sf.maxT[src], site: sf.sites[src], seq: tev.Seq}
		sf.last[src] = k
		p := pendingEvent{key: k, src: src, tick: tev.ESK == SiteTickESK, prevM: prevM}
		if !p.tick {
			p.ev = qualify(sf.sites[src], eventOf(tev))
		}
		at, _ := slices.BinarySearchFunc(sf.pending, p, comparePending)
		lo = min(lo, at)
		added = append(added, p)
	}
	if len(added) > 0 {
		if lo < len(sf.pending) {
			sf.reorders++
			sf.undone += uint64(len(sf.pending) - lo)
			for j := len(sf.undos) - 1; j >= lo; j-- {
				st.undo(sf.undos[j])
			}
			sf.undos = sf.undos[:lo]
		}
		sf.pending = append(sf.pending, added...)
		slices.SortFunc(sf.pending[lo:], comparePending)
		for _, p := range sf.pending[lo:] {
			if p.tick {
				sf.undos = append(sf.undos, undoRec{noop: true})
				continue
			}
			r, u := st.applyUndoable(p.ev)
			sf.undos = append(sf.undos, u)
			if p.src == src {
				res[p.ev.pos.Seq] = r
			}
		}
	}
	sf.advance()
	return res
}

// advance moves the snapshot point to the last event of the site's own
// log (source 0) that no event to come can precede (none is before the
// least of the sources' last keys), and forgets how to undo the events
// up to it.
func (sf *siteFold) advance() {
	w := sf.last[0]
	for _, k := range sf.last {
		if k.seq == 0 {
			return // a source with nothing yet: anything may come first
		}
		if k.less(w) {
			w = k
		}
	}
	n := 0
	for i := 0; i < len(sf.pending) && !w.less(sf.pending[i].key); i++ {
		if sf.pending[i].src == 0 {
			sf.point, n = sf.pending[i].key, i+1
		}
	}
	if n > 0 {
		sf.pending = slices.Delete(sf.pending, 0, n)
		sf.undos = slices.Delete(sf.undos, 0, n)
	}
}

// siteSource passes a source's batches to the site fold before the fold
// applies them, so that a batch that falls before pending events costs
// one rebuild; the fold's Apply then hands out the results.
type siteSource struct {
	fold.Source
	s   *Store
	src int
}

func (ss *siteSource) Read(ctx context.Context, after uint64, apply func([]transport.Event) error) error {
	return ss.Source.Read(ctx, after, func(evs []transport.Event) error {
		ss.s.mu.Lock()
		res := ss.s.site.receive(ss.s.st, ss.src, evs)
		for seq, r := range res {
			ss.s.siteResults[ss.src][seq] = r
		}
		ss.s.mu.Unlock()
		return apply(evs)
	})
}

// openSiteSources returns the sources of a Store at a site: its own log
// and every copy the site holds, each with the site it comes from.
func openSiteSources(ctx context.Context, log *transport.Log) (srcs []fold.Source, sites []string, closers []func() error, err error) {
	srcs = []fold.Source{fold.LogSource(log, ESKPrefix+">")}
	sites = []string{log.Site()}
	origins, oerr := log.Origins(ctx)
	if oerr != nil && len(origins) == 0 {
		return nil, nil, nil, fmt.Errorf("kv: the sites whose logs to fold: %w", oerr)
	}
	for _, o := range origins {
		c, err := log.Copy(ctx, o)
		if errors.Is(err, transport.ErrNotFound) {
			continue // no copy here yet
		}
		if err != nil {
			closeAll(closers)
			return nil, nil, nil, err
		}
		srcs = append(srcs, fold.LogSource(c, ESKPrefix+">"))
		sites = append(sites, o)
		closers = append(closers, c.Close)
	}
	return srcs, sites, closers, nil
}

// Tick writes a tick to the site's own log: the kv Stores of every site
// can then stabilize what the site wrote before it. A site's node ticks
// when its log has been idle a while. Only for a Store at a site.
func (s *Store) Tick(ctx context.Context) error {
	if s.site == nil {
		return fmt.Errorf("%w: not a site's store", transport.ErrInvalidOption)
	}
	_, err := s.log.Write(ctx, SiteTickESK, []byte(`{}`), transport.WithHLC())
	return err
}

// SiteStats says how a Store at a site merges the sites' logs.
type SiteStats struct {
	Sites    []string // the sites folded, this one first
	Pending  int      // events that an event still to come may precede
	Reorders uint64   // batches that fell before pending events
	Undone   uint64   // events undone and applied again for them
}

// SiteStats returns the merge's state (zero for a Store not at a site).
func (s *Store) SiteStats() SiteStats {
	if s.site == nil {
		return SiteStats{}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return SiteStats{Sites: slices.Clone(s.site.sites), Pending: len(s.site.pending), Reorders: s.site.reorders, Undone: s.site.undone}
}

// openAtSite opens s, a Store on a site's own log, on every site's log.
func openAtSite(ctx context.Context, s *Store) (*Store, error) {
	srcs, sites, closers, err := openSiteSources(ctx, s.log)
	if err != nil {
		return nil, err
	}
	s.closers = closers
	s.site = newSiteFold(sites)
	for i := range srcs {
		s.siteResults = append(s.siteResults, map[uint64]result{})
		srcs[i] = &siteSource{Source: srcs[i], s: s, src: i}
	}
	sn, err := openSiteSnapshots(ctx, s.log, s.opts)
	if err != nil {
		closeAll(closers)
		return nil, err
	}
	var at []uint64
	if !s.opts.NoRestore {
		at = s.restoreSite(ctx, sn)
	}
	cfg := fold.Config[outcome]{Name: "kv", Sources: srcs, Mu: &s.mu, Apply: s.apply, KeepOutcomes: recentSize, Logger: s.lg,
		Snapshots: sn, Encode: s.encodeSite, SnapshotEvery: s.opts.SnapshotEvery, SnapshotInterval: s.opts.SnapshotInterval,
		SnapshotTimeout: max(s.log.Config().Timeout, time.Minute)}
	if s.f, err = fold.New(cfg); err != nil {
		closeAll(closers)
		return nil, err
	}
	s.f.Start(at)
	return s, nil
}

// MissingSites returns the sites whose logs this site holds a copy of
// and the Store does not fold (they appeared after it opened): a Store
// opened again folds them too. Only for a Store at a site.
func (s *Store) MissingSites(ctx context.Context) ([]string, error) {
	if s.site == nil {
		return nil, fmt.Errorf("%w: not a site's store", transport.ErrInvalidOption)
	}
	origins, err := s.log.Origins(ctx)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, o := range origins {
		if slices.Contains(s.site.sites, o) {
			continue
		}
		c, err := s.log.Copy(ctx, o)
		if err != nil {
			continue // no copy here yet
		}
		_ = c.Close()
		missing = append(missing, o)
	}
	return missing, nil
}

// closeAll closes the copies a Store at a site opened.
func closeAll(closers []func() error) {
	for _, c := range closers {
		_ = c()
	}
}
