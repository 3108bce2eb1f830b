package apitest

import (
	"testing"

	"github.com/detbus/detbus/internal/node/web"
)

// ServeNode serves pages and apis in the node's UI shell behind the access
// rule a, as `detbus serve` does, on a loopback server (see [Serve]), and
// returns its base URL.
func ServeNode(t testing.TB, pages []web.Page, apis []web.API, a web.Access) string {
	t.Helper()
	ui, err := web.New(pages, apis)
	if err != nil {
		t.Fatal(err)
	}
	protected, err := web.Protect(ui, a)
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, protected)
}
