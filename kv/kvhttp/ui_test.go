package kvhttp_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestPages: the kv and tasks pages and their assets are served with the
// content security policy, and each page links to the other.
func TestPages(t *testing.T) {
	e := newEnv(t, envConfig{})
	for path, want := range map[string]string{
		"/":             `<title>detbus kv</title>`,
		"/tasks":        `<title>detbus tasks</title>`,
		"/ui/common.js": "function request(",
		"/ui/app.js":    `const API = "/api/kv"`,
		"/ui/tasks.js":  `const API = "/api/tasks"`,
		"/ui/style.css": ".badge.state-dead",
	} {
		r := e.do("GET", path, "")
		if r.Status != http.StatusOK || !strings.Contains(string(r.Raw), want) {
			t.Fatalf("GET %s: %d %.300s", path, r.Status, r.Raw)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	for path, link := range map[string]string{"/": `href="/tasks"`, "/tasks": `href="/"`} {
		if r := e.do("GET", path, ""); !strings.Contains(string(r.Raw), link) {
			t.Fatalf("GET %s does not link %s", path, link)
		}
	}
}
