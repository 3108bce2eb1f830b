package kvhttp

import (
	"embed"

	"github.com/detbus/detbus/internal/node/web"
)

// pageFiles holds the kv page of the node's UI: its body (kv.html) and
// its script (app.js).
//
//go:embed ui
var pageFiles embed.FS

// Page returns the kv page of the node's UI, served at "/" by the shell
// of package web over this package's API, which the server mounts beside
// it at [APIPrefix].
func Page() web.Page {
	return web.Page{Path: "/", Title: "kv", Files: web.Dir(pageFiles, "ui"), Body: "kv.html", Scripts: []string{"app.js"}}
}

// APIPrefix is where the server mounts a [Handler] ([web.API]).
const APIPrefix = "/api/kv/"
