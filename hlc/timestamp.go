package hlc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the message header that carries a [Timestamp] in
// its [Timestamp.String] form. Receivers decode the value with [Parse] and
// pass it to [Clock.Update].
const Header = "Detbus-Hlc"

// ErrInvalidTimestamp is the sentinel error wrapped by every error that
// [Parse], [Timestamp.UnmarshalText] and [Timestamp.MarshalText] return for
// a malformed or unencodable timestamp. Test for it with [errors.Is].
var ErrInvalidTimestamp = errors.New("hlc: invalid timestamp")

// maxTextLen is the longest input accepted by [Parse]. The canonical form is
// 30 bytes long; the limit leaves room for extra leading zeros while
// bounding the work done on hostile input.
const maxTextLen = 64

// Timestamp is a hybrid logical clock timestamp: a physical wall time plus a
// logical counter that orders events sharing a wall time.
//
// The zero value is the smallest timestamp with a non-negative wall time and
// reports true from [Timestamp.IsZero]. Timestamp is a plain value and is
// safe to copy and to use from multiple goroutines.
type Timestamp struct {
	// WallTime is the physical component, in nanoseconds since the Unix
	// epoch.
	WallTime int64
	// Logical is the logical component, which orders timestamps that share
	// a WallTime.
	Logical uint32
}

// FromTime returns the timestamp whose wall time is t, in Unix nanoseconds,
// and whose logical component is zero. As with [time.Time.UnixNano], the
// result is undefined for times outside the years 1678 to 2262.
func FromTime(t time.Time) Timestamp {
	return Timestamp{WallTime: t.UnixNano()}
}

// Compare returns -1 if t is before o, 0 if they are equal and +1 if t is
// after o. Timestamps are ordered by WallTime and then by Logical.
func (t Timestamp) Compare(o Timestamp) int {
	switch {
	case t.WallTime < o.WallTime:
		return -1
	case t.WallTime > o.WallTime:
		return 1
	case t.Logical < o.Logical:
		return -1
	case t.Logical > o.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is strictly before o, that is whether
// t.Compare(o) < 0 (see [Timestamp.Compare]).
func (t Timestamp) Less(o Timestamp) bool {
	return t.Compare(o) < 0
}

// IsZero reports whether t is the zero [Timestamp], with both components
// zero.
func (t Timestamp) IsZero() bool {
	return t == Timestamp{}
}

// Next returns the smallest timestamp strictly greater than t: t with its
// logical component incremented, or, if the logical component is already
// at its maximum, the next nanosecond of wall time with a logical component
// of zero. The result is undefined for a WallTime of [math.MaxInt64].
func (t Timestamp) Next() Timestamp {
	if t.Logical == math.MaxUint32 {
		return Timestamp{WallTime: t.WallTime + 1}
	}
	return Timestamp{WallTime: t.WallTime, Logical: t.Logical + 1}
}

// Time returns the wall time component of t as a [time.Time] in UTC. The
// logical component is discarded.
func (t Timestamp) Time() time.Time {
	return time.Unix(0, t.WallTime).UTC()
}

// String returns t in the form "<wall>.<logical>", with the wall time
// zero-padded to 19 decimal digits and the logical component zero-padded to
// 10, for example "1700000000000000000.0000000003". For timestamps with a
// non-negative wall time the strings sort lexically in the same order as
// [Timestamp.Compare], and [Parse] returns t unchanged. A negative wall time
// is rendered with a leading minus sign, which [Parse] rejects.
func (t Timestamp) String() string {
	if t.WallTime < 0 {
		return fmt.Sprintf("%019d.%010d", t.WallTime, t.Logical)
	}
	var b [30]byte
	appendPadded(b[:19], uint64(t.WallTime))
	b[19] = '.'
	appendPadded(b[20:], uint64(t.Logical))
	return string(b[:])
}

// appendPadded writes v in decimal right-aligned into dst, zero-padded.
func appendPadded(dst []byte, v uint64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// MarshalText implements [encoding.TextMarshaler] using the
// [Timestamp.String] form, so a Timestamp is encoded as a JSON string. It
// returns an error wrapping [ErrInvalidTimestamp] if t has a negative wall
// time, which could not be decoded again.
func (t Timestamp) MarshalText() ([]byte, error) {
	if t.WallTime < 0 {
		return nil, fmt.Errorf("%w %s: negative wall time", ErrInvalidTimestamp, t)
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]. It accepts exactly
// the inputs accepted by [Parse] and returns the same errors, which wrap
// [ErrInvalidTimestamp]. On error t is left unchanged.
func (t *Timestamp) UnmarshalText(text []byte) error {
	ts, err := Parse(string(text))
	if err != nil {
		return err
	}
	*t = ts
	return nil
}

// Parse parses a timestamp in the "<wall>.<logical>" form produced by
// [Timestamp.String]. Both parts must be non-empty runs of ASCII decimal
// digits; leading zeros are optional, so "123.4" is accepted as well as the
// zero-padded form. The wall part must fit in an int64 and the logical part
// in a uint32. Signs, whitespace, extra dots and inputs longer than 64 bytes
// are rejected.
//
// On failure Parse returns the zero [Timestamp] and an error that wraps
// [ErrInvalidTimestamp] and quotes the input, truncated to 64 bytes. Parse
// never panics.
func Parse(s string) (Timestamp, error) {
	if len(s) > maxTextLen {
		return Timestamp{}, invalid(s, "longer than 64 bytes")
	}
	wallStr, logicalStr, ok := strings.Cut(s, ".")
	if !ok {
		return Timestamp{}, invalid(s, "missing '.'")
	}
	if !isDigits(wallStr) {
		return Timestamp{}, invalid(s, "wall time is not a decimal number")
	}
	if !isDigits(logicalStr) {
		return Timestamp{}, invalid(s, "logical part is not a decimal number")
	}
	wall, err := strconv.ParseInt(wallStr, 10, 64)
	if err != nil {
		return Timestamp{}, invalid(s, "wall time out of range")
	}
	logical, err := strconv.ParseUint(logicalStr, 10, 32)
	if err != nil {
		return Timestamp{}, invalid(s, "logical part out of range")
	}
	return Timestamp{WallTime: wall, Logical: uint32(logical)}, nil
}

// isDigits reports whether s is non-empty and consists only of ASCII
// decimal digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// invalid builds a Parse error wrapping ErrInvalidTimestamp that quotes s,
// truncated to maxTextLen bytes.
func invalid(s, reason string) error {
	quoted := s
	if len(quoted) > maxTextLen {
		quoted = quoted[:maxTextLen] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidTimestamp, quoted, reason)
}
