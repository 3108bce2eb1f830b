package board

import (
	"embed"
	"io/fs"

	"github.com/detbus/detbus/internal/node/web"
)

// pageFiles holds the transforms page of the node's UI: its body
// (transforms.html), script (transforms.js) and styles (transforms.css).
//
//go:embed ui
var pageFiles embed.FS

// Page returns the transforms page of the node's UI, served at
// "/transforms" by the shell of package web over the API of
// [Board.Handler], which the server mounts beside it at [APIPrefix].
func Page() web.Page {
	files, err := fs.Sub(pageFiles, "ui")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	return web.Page{Path: "/transforms", Title: "transforms", Files: files, Body: "transforms.html",
		Scripts: []string{"transforms.js"}, Styles: []string{"transforms.css"}}
}

// APIPrefix is where the server mounts [Board.Handler] ([web.API]).
const APIPrefix = "/api/transforms/"
