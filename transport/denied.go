package transport

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/nats-io/nats.go"
)

// ErrForbidden is wrapped when the server refused a publish because the
// connection's user may not publish to that subject (nothing was written),
// and when it refused a connection's credentials.
var ErrForbidden = errors.New("transport: forbidden")

// ForbiddenError says which subject the server refused to take from this
// connection's user.
type ForbiddenError struct {
	ESK     string
	Subject string
	Reason  string // the server's words
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("transport: this connection may not write ESK %q (nothing written): %s", e.ESK, e.Reason)
}

// Unwrap makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

var publishDeniedRe = regexp.MustCompile(`Permissions Violation for Publish to "([^"]+)"`)

// denials turns the server's asynchronous permission violations into
// errors of the calls waiting on those subjects. NATS answers a refused
// publish only with an error on the connection, never with a reply, so
// without this a refused write would wait for its deadline.
type denials struct {
	mu      sync.Mutex
	waiters map[string]map[*denialWaiter]struct{} // subject -> calls publishing to it
	changed chan struct{}                         // closed and replaced at each denial
	gen     uint64                                // number of denials seen
	recent  map[string]denial                     // subject -> newest denial, bounded
}

type denial struct {
	gen    uint64
	reason string
}

type denialWaiter struct {
	esk    string
	cancel context.CancelCauseFunc
}

const maxRecentDenials = 256

// hook chains the log's handler before the connection's own error
// handler.
func (d *denials) hook(nc *nats.Conn) {
	d.changed = make(chan struct{})
	prev := nc.ErrorHandler()
	nc.SetErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
		d.observe(err)
		if prev != nil {
			prev(c, s, err)
		}
	})
}

func (d *denials) observe(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	m := publishDeniedRe.FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	subject, reason := m[1], m[0]
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.recent == nil || len(d.recent) >= maxRecentDenials {
		d.recent = map[string]denial{}
	}
	d.gen++
	d.recent[subject] = denial{gen: d.gen, reason: reason}
	for w := range d.waiters[subject] {
		w.cancel(&ForbiddenError{ESK: w.esk, Subject: subject, Reason: reason})
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// guard returns a context that is cancelled with a [*ForbiddenError] if
// the server refuses a publish to subject while it is in use, and the
// function that releases it.
func (d *denials) guard(ctx context.Context, esk, subject string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &denialWaiter{esk: esk, cancel: cancel}
	d.mu.Lock()
	if d.waiters == nil {
		d.waiters = map[string]map[*denialWaiter]struct{}{}
	}
	ws := d.waiters[subject]
	if ws == nil {
		ws = map[*denialWaiter]struct{}{}
		d.waiters[subject] = ws
	}
	ws[w] = struct{}{}
	d.mu.Unlock()
	return ctx, func() {
		d.mu.Lock()
		delete(ws, w)
		if len(ws) == 0 && d.waiters[subject] != nil && len(d.waiters[subject]) == 0 {
			delete(d.waiters, subject)
		}
		d.mu.Unlock()
		cancel(nil)
	}
}

// forbidden returns the error of a call whose publish failed under a
// guarded ctx, if the failure was a denial.
func forbidden(ctx context.Context) error {
	var fe *ForbiddenError
	if errors.As(context.Cause(ctx), &fe) {
		return fe
	}
	return nil
}

// mark returns the number of denials so far and a channel closed at the
// next one: a publish made after the call is refused if a denial of its
// subject comes after the mark.
func (d *denials) mark() (uint64, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen, d.changed
}

// deniedSince reports a denial of a publish to subject that came after
// mark, if any (the newest 256 subjects are kept).
func (d *denials) deniedSince(mark uint64, esk, subject string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dn, ok := d.recent[subject]; ok && dn.gen > mark {
		return &ForbiddenError{ESK: esk, Subject: subject, Reason: dn.reason}
	}
	return nil
}

// isAuthError reports whether a connect failed because the server refused
// the credentials, which no retry mends.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}
