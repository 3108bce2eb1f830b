package hlc

import (
	"sync/atomic"
	"time"
)

// ManualClock is a wall clock that only moves when told to, for use in
// tests. Its [ManualClock.Now] method can be passed to [NewClock] in place
// of [time.Now]. A ManualClock is safe for concurrent use by multiple
// goroutines; the zero value reads as the Unix epoch.
type ManualClock struct {
	nanos atomic.Int64
}

// NewManualClock returns a [ManualClock] whose time is start nanoseconds
// after the Unix epoch.
func NewManualClock(start int64) *ManualClock {
	m := &ManualClock{}
	m.nanos.Store(start)
	return m
}

// Now returns the current manual time as a [time.Time] in UTC. It is safe
// for concurrent use.
func (m *ManualClock) Now() time.Time {
	return time.Unix(0, m.nanos.Load()).UTC()
}

// Set sets the manual time to nanos nanoseconds after the Unix epoch. The
// time may be moved backwards. Set is safe for concurrent use.
func (m *ManualClock) Set(nanos int64) {
	m.nanos.Store(nanos)
}

// Increment moves the manual time forward by d nanoseconds, or backwards if
// d is negative. Increment is safe for concurrent use.
func (m *ManualClock) Increment(d int64) {
	m.nanos.Add(d)
}
