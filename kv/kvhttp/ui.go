package kvhttp

import (
	"embed"
	"io/fs"
	"net/http"
)

// assets holds the browser UI: the kv page (index.html, app.js), the
// tasks page (tasks.html, tasks.js), what they share (common.js,
// style.css), and the login page that [Protect] shows.
//
//go:embed ui
var assets embed.FS

// contentSecurityPolicy lets the UI load only its own scripts and styles
// and talk only to this server.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (h *Handler) uiRoutes(m *http.ServeMux) {
	static, err := fs.Sub(assets, "ui")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(static))
	m.Handle("GET /ui/", uiHeaders(files))
	page := func(name string) http.Handler {
		return uiHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeFileFS(w, r, static, name)
		}))
	}
	m.Handle("GET /{$}", page("index.html"))
	m.Handle("GET /tasks", page("tasks.html"))
}

// uiHeaders sets the headers of every UI asset: the content security
// policy, and revalidation so that a new binary's UI is picked up.
func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
