package transport

import "errors"

var (
	// ErrInvalidESK is wrapped by every error about a malformed ESK; the
	// concrete error is an [*ESKError].
	ErrInvalidESK = errors.New("transport: invalid ESK")

	// ErrIndexAhead is returned by [Log.ExistsOrWrite] when the requested
	// index is beyond the current count of the ESK; nothing is written. The
	// concrete error is an [*IndexAheadError].
	ErrIndexAhead = errors.New("transport: index ahead of count")

	// ErrNotFound is returned when an (ESK, index) does not exist yet.
	ErrNotFound = errors.New("transport: event not found")

	// ErrUnavailable is wrapped when NATS could not be reached or did not
	// answer in time. Errors from writes say whether the event may have been
	// stored.
	ErrUnavailable = errors.New("transport: unavailable")

	// ErrClosed is returned by calls on a closed [Log].
	ErrClosed = errors.New("transport: log closed")

	// ErrInvalidOption is wrapped by errors from options and configs that
	// do not validate.
	ErrInvalidOption = errors.New("transport: invalid option")
)

// IndexAheadError says that an append asked for an index past the end of
// its ESK.
type IndexAheadError struct {
	ESK   string
	Index uint64 // the index asked for
	Count uint64 // the ESK's count when the request was refused
}

func (e *IndexAheadError) Error() string {
	return "transport: index " + itoa(e.Index) + " of ESK " + quote(e.ESK) +
		" is ahead of its count " + itoa(e.Count) + " (the next index is " + itoa(e.Count) + ")"
}

// Unwrap makes errors.Is(err, ErrIndexAhead) true.
func (e *IndexAheadError) Unwrap() error { return ErrIndexAhead }
