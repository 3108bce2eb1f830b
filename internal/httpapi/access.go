package httpapi

import (
	"context"
	"fmt"
	"net/http"
)

type writeCheckKey struct{}

// WithWriteCheck returns ctx carrying check, which a write handler calls
// with the ESK it is about to write ([MayWrite]); the node's access rule
// puts the caller's rights there.
func WithWriteCheck(ctx context.Context, check func(esk string) error) context.Context {
	return context.WithValue(ctx, writeCheckKey{}, check)
}

// MayWrite returns nil when the request may write esk, and otherwise an
// [*Error] answered with 403 that names the ESK. A request that carries no
// check (a handler used without an access rule) may write.
func MayWrite(r *http.Request, esk string) error {
	check, _ := r.Context().Value(writeCheckKey{}).(func(string) error)
	if check == nil {
		return nil
	}
	if err := check(esk); err != nil {
		return Errorf(http.StatusForbidden, "%v", fmt.Errorf("not allowed to write %s: %w", esk, err))
	}
	return nil
}
