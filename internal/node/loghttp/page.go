package loghttp

import (
	"embed"

	"github.com/detbus/detbus/internal/node/web"
)

// pageFiles holds the log page of the node's UI: its body (log.html), its
// script (log.js) and its styles (log.css).
//
//go:embed ui
var pageFiles embed.FS

// Page returns the log page of the node's UI, served at "/log" by the
// shell of package web over this package's API, which the server mounts
// beside it at [APIPrefix].
func Page() web.Page {
	return web.Page{Path: "/log", Title: "log", Files: web.Dir(pageFiles, "ui"), Body: "log.html", Scripts: []string{"log.js"}, Styles: []string{"log.css"}}
}
