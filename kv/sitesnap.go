package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/detbus/detbus/hlc"
	"github.com/detbus/detbus/internal/fold"
	"github.com/detbus/detbus/transport"
)

// A Store at a site snapshots the state at its snapshot point: the last
// event of its own log that no event to come can precede. That state is
// the same at every replica of the site (it holds exactly the events
// before the point in the merged order), and so is where the point
// leaves each log (the last event of each before it, and the greatest
// time so far), so the snapshot's bytes are the same too, and its claim
// at the point's sequence of the site's own log confirms it as a kv
// snapshot's does. Taking one undoes the events after the point, encodes
// the state, and applies them again.

// siteSnapshotFormat is the version of a site snapshot's encoding.
const siteSnapshotFormat = 1

// siteSnapshot is a site's kv state at a snapshot point, and where it
// leaves each site's log.
type siteSnapshot struct {
	Format int             `json:"format"`
	Own    uint64          `json:"own"` // the point: a sequence of the site's own log
	Logs   []siteLogCursor `json:"logs"`
	State  json.RawMessage `json:"state"`
}

// siteLogCursor is where a snapshot leaves one site's log.
type siteLogCursor struct {
	Site string        `json:"site"`
	Seq  uint64        `json:"seq"` // the last event before the point
	Max  hlc.Timestamp `json:"max"` // the log's greatest time up to it
}

// encodeSite encodes the state at the snapshot point. It returns no
// data, and sequence 0, before there is a point.
func (s *Store) encodeSite() ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sf := s.site
	if sf.point.seq == 0 {
		return nil, 0, nil
	}
	for j := len(sf.undos) - 1; j >= 0; j-- {
		s.st.undo(sf.undos[j])
	}
	s.keysMu.Lock()
	var buf bytes.Buffer
	err := s.st.dump(&buf)
	s.keysMu.Unlock()
	// Apply the events after the point again, whatever happened.
	sf.undos = sf.undos[:0]
	for _, p := range sf.pending {
		if p.tick {
			sf.undos = append(sf.undos, undoRec{noop: true})
			continue
		}
		_, u := s.st.applyUndoable(p.ev)
		sf.undos = append(sf.undos, u)
	}
	if err != nil {
		return nil, 0, err
	}
	snap := siteSnapshot{Format: siteSnapshotFormat, Own: sf.point.seq, State: buf.Bytes()}
	for i, site := range sf.sites {
		c := siteLogCursor{Site: site, Seq: sf.seen[i], Max: sf.maxT[i]}
		if at := slices.IndexFunc(sf.pending, func(p pendingEvent) bool { return p.src == i }); at >= 0 {
			c.Seq, c.Max = sf.pending[at].key.seq-1, sf.pending[at].prevM
		}
		snap.Logs = append(snap.Logs, c)
	}
	slices.SortFunc(snap.Logs, func(a, b siteLogCursor) int { return strings.Compare(a.Site, b.Site) })
	data, err := json.Marshal(snap)
	return data, snap.Own, err
}

// decodeSiteSnapshot decodes a site snapshot and the sequence of the
// site's own log it covers.
func decodeSiteSnapshot(data []byte) (siteSnapshot, uint64, error) {
	var snap siteSnapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return snap, 0, fmt.Errorf("%w: site snapshot: %v", errCorrupt, err)
	}
	if snap.Format != siteSnapshotFormat {
		return snap, 0, fmt.Errorf("%w: site snapshot format %d, this version reads %d", errCorrupt, snap.Format, siteSnapshotFormat)
	}
	return snap, snap.Own, nil
}

// openSiteSnapshots returns the store of a site's kv snapshots: the
// site's own bucket, claims on the site's own log.
func openSiteSnapshots(ctx context.Context, log *transport.Log, opts Options) (*fold.SnapshotStore, error) {
	return fold.OpenSnapshots(ctx, log, fold.SnapshotConfig{
		Kind: "kv-site", What: "kv at a site", Bucket: opts.Snapshots, Replica: opts.Replica, Format: siteSnapshotFormat, Logger: opts.Logger,
	})
}

// restoreSite restores the newest valid site snapshot whose logs are the
// sites folded now, and returns where it leaves each source (nil when it
// restored none).
func (s *Store) restoreSite(ctx context.Context, sn *fold.SnapshotStore) []uint64 {
	sf := s.site
	check := func(_ context.Context, snap siteSnapshot) error {
		if len(snap.Logs) != len(sf.sites) {
			return fmt.Errorf("it folds %d sites' logs, this store %d", len(snap.Logs), len(sf.sites))
		}
		for _, c := range snap.Logs {
			if !slices.Contains(sf.sites, c.Site) {
				return fmt.Errorf("it folds site %s, which this store does not", c.Site)
			}
		}
		return nil
	}
	snap, seq, ok := fold.Restore(ctx, sn, decodeSiteSnapshot, check)
	if !ok {
		return nil
	}
	st, err := loadState(snap.State)
	if err != nil {
		s.lg.Warn("kv: a site snapshot's state does not load", "seq", seq, "err", err)
		return nil
	}
	at := make([]uint64, len(sf.sites))
	for _, c := range snap.Logs {
		i := slices.Index(sf.sites, c.Site)
		at[i] = c.Seq
		sf.seen[i], sf.maxT[i] = c.Seq, c.Max
		if c.Seq > 0 {
			sf.last[i] = siteKey{m: c.Max, site: c.Site, seq: c.Seq}
		}
	}
	sf.point = sf.last[0]
	s.st, s.restored = st, seq
	return at
}
