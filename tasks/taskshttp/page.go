package taskshttp

import (
	"embed"

	"github.com/detbus/detbus/internal/node/web"
)

// pageFiles holds the tasks page of the node's UI: its body (tasks.html)
// and its script (tasks.js).
//
//go:embed ui
var pageFiles embed.FS

// Page returns the tasks page of the node's UI, served at "/tasks" by the
// shell of package web over this package's API, which the server mounts
// beside it at [APIPrefix].
func Page() web.Page {
	return web.Page{Path: "/tasks", Title: "tasks", Files: web.Dir(pageFiles, "ui"), Body: "tasks.html", Scripts: []string{"tasks.js"}}
}

// APIPrefix is where the server mounts a [Handler] ([web.API]).
const APIPrefix = "/api/tasks/"
