package transport

import (
	"sync/atomic"
	"time"

	"github.com/detbus/detbus/hlc"
)

// MaxClockLead bounds how far ahead of its own wall clock a site's HLC
// clock moves by feeding on the times of other sites' events: half of
// [MaxEventSkew], so that the site's own writes stamped from it stay
// within the skew that readers accept.
//
// A Log reading a copy of another site's log ([Log.Copy]) feeds every
// event's time to the site's clock ([Config.Clock], shared with the
// copy), so that a write made at the site after it read an event from
// another site is stamped later than that event: causality across sites
// holds while their clocks are within MaxClockLead of each other. A time
// further ahead moves the clock only MaxClockLead ahead of the wall (it
// is counted in [ClockStats.Limited]): a site whose clock runs d ahead of
// the others wins last-writer-wins comparisons against writes made
// elsewhere after its own for at most d - MaxClockLead, and no stamp is
// believed further than [MaxEventSkew] from the time its own site stored
// it.
const MaxClockLead = MaxEventSkew / 2

// ClockStats counts the remote times a Log fed to its clock.
type ClockStats struct {
	Fed     uint64 // times merged into the clock
	Limited uint64 // times further than MaxClockLead ahead of the wall clock: the clock moved only that far
}

type clockFeed struct {
	fed, limited atomic.Uint64
	wall         func() time.Time // nil: time.Now
}

// feedClock merges the time of an event read from another site's log
// into the site's clock, at most MaxClockLead ahead of the wall clock.
func (l *Log) feedClock(ts hlc.Timestamp) {
	f := l.clockFeed
	if f == nil {
		return
	}
	now := time.Now
	if f.wall != nil {
		now = f.wall
	}
	if limit := now().Add(MaxClockLead).UnixNano(); ts.WallTime > limit {
		ts = hlc.Timestamp{WallTime: limit}
		f.limited.Add(1)
	}
	if _, err := l.cfg.Clock.Update(ts); err == nil {
		f.fed.Add(1)
	}
}

// ClockStats returns what this Log fed to its clock: non-zero only for a
// copy of another site's log.
func (l *Log) ClockStats() ClockStats {
	if l.clockFeed == nil {
		return ClockStats{}
	}
	return ClockStats{Fed: l.clockFeed.fed.Load(), Limited: l.clockFeed.limited.Load()}
}
