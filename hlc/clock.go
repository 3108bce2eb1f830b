package hlc

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// ErrUntrustedRemote is the sentinel error wrapped by the [*OffsetError]
// that [Clock.Update] returns when a remote timestamp is further ahead of
// the local wall clock than the clock's maximum offset. Test for it with
// [errors.Is].
var ErrUntrustedRemote = errors.New("hlc: remote timestamp too far ahead")

// OffsetError reports a remote timestamp rejected by [Clock.Update] because
// its wall time was more than MaxOffset ahead of the local wall clock. It
// unwraps to [ErrUntrustedRemote]. An OffsetError is an immutable value and
// is safe to share between goroutines.
type OffsetError struct {
	// Remote is the rejected remote timestamp.
	Remote Timestamp
	// Local is the local wall clock reading it was compared against.
	Local time.Time
	// MaxOffset is the maximum offset the clock was configured with.
	MaxOffset time.Duration
}

// Error describes the rejected timestamp, how far ahead of the local wall
// clock it was, and the configured maximum offset.
func (e *OffsetError) Error() string {
	return fmt.Sprintf("%v: remote %s is %v ahead of local wall clock %s, exceeding max offset %v",
		ErrUntrustedRemote, e.Remote, e.Remote.Time().Sub(e.Local), FromTime(e.Local), e.MaxOffset)
}

// Unwrap returns [ErrUntrustedRemote].
func (e *OffsetError) Unwrap() error {
	return ErrUntrustedRemote
}

// Clock is a hybrid logical clock. It issues strictly increasing timestamps
// with [Clock.Now] and merges remote timestamps with [Clock.Update]; see the
// package documentation for the full contract.
//
// A Clock is safe for concurrent use by multiple goroutines. Create one with
// [NewClock]; the zero value is also usable and behaves like
// NewClock(nil, 0): it reads [time.Now] and does not bound remote offsets.
// A Clock must not be copied after first use.
type Clock struct {
	wall      func() time.Time
	maxOffset time.Duration

	mu   sync.Mutex
	last Timestamp // guarded by mu
}

// NewClock returns a [Clock] that reads physical time from wall and rejects
// remote timestamps more than maxOffset ahead of it in [Clock.Update].
//
// If wall is nil, [time.Now] is used. If maxOffset is zero or negative, no
// bound is enforced and every remote timestamp is accepted. The wall
// function may be called concurrently and while the clock's internal lock
// is held, so it must be safe for concurrent use and must not call back
// into the Clock; [ManualClock.Now] meets both requirements.
func NewClock(wall func() time.Time, maxOffset time.Duration) *Clock {
	return &Clock{wall: wall, maxOffset: maxOffset}
}

// MaxOffset returns the maximum offset the clock was created with. A value
// of zero or less means remote timestamps are not bounded. It is safe for
// concurrent use.
func (c *Clock) MaxOffset() time.Duration {
	return c.maxOffset
}

// physical reads the wall clock. The caller holds c.mu.
func (c *Clock) physical() time.Time {
	if c.wall == nil {
		return time.Now()
	}
	return c.wall()
}

// Now returns a new timestamp for a local or send event. The result is
// strictly greater than every timestamp previously returned by [Clock.Now]
// or [Clock.Update] on c: if the wall clock is ahead of the last timestamp,
// the result is the wall time with a logical component of zero; otherwise
// it is the last timestamp advanced by [Timestamp.Next]. Now never fails
// and is safe for concurrent use.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall := c.physical().UnixNano(); wall > c.last.WallTime {
		c.last = Timestamp{WallTime: wall}
	} else {
		c.last = c.last.Next()
	}
	return c.last
}

// Update merges a timestamp received from another node into the clock and
// returns the timestamp of the receive event, which also becomes the value
// of [Clock.Last]. The result is strictly greater than both remote and every
// timestamp c issued before: it is the wall time with a logical component
// of zero if the wall clock is ahead of both, and otherwise the greater of
// the last timestamp and remote, advanced by [Timestamp.Next].
//
// If the clock has a positive maximum offset and remote.WallTime is more
// than that offset ahead of the local wall clock, Update returns the zero
// [Timestamp] and an [*OffsetError] wrapping [ErrUntrustedRemote], and the
// clock is left unchanged. Update is safe for concurrent use.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.physical()
	wall := now.UnixNano()
	if c.maxOffset > 0 {
		limit := int64(math.MaxInt64)
		if wall <= math.MaxInt64-int64(c.maxOffset) {
			limit = wall + int64(c.maxOffset)
		}
		if remote.WallTime > limit {
			return Timestamp{}, &OffsetError{Remote: remote, Local: now, MaxOffset: c.maxOffset}
		}
	}
	latest := c.last
	if latest.Less(remote) {
		latest = remote
	}
	if wall > latest.WallTime {
		c.last = Timestamp{WallTime: wall}
	} else {
		c.last = latest.Next()
	}
	return c.last, nil
}

// Last returns the most recent timestamp issued by [Clock.Now] or
// [Clock.Update], or the zero [Timestamp] if none has been issued yet. It
// does not read the wall clock or advance the clock, and is safe for
// concurrent use.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
