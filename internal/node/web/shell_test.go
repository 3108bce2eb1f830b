package web_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/internal/node/web"
)

// page returns a page with a body and a script of its own.
func page(path, title string) web.Page {
	return web.Page{Path: path, Title: title, Body: title + ".html", Scripts: []string{title + ".js"}, Styles: []string{title + ".css"},
		Files: fstest.MapFS{
			title + ".html": {Data: []byte(`<main id="` + title + `-main"></main>`)},
			title + ".js":   {Data: []byte(`const PAGE = "` + title + `";`)},
			title + ".css":  {Data: []byte(`#` + title + `-main { color: red; }`)},
		}}
}

// api answers every request with its path.
func api(name string) web.API {
	return web.API{Prefix: "/api/" + name + "/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"api": name, "path": r.URL.Path, "method": r.Method})
	})}
}

// TestShell: every page is served at its path inside the shell, with the
// nav listing all pages in order and marking the current one; the files
// of the shell and of the pages are served under /ui/, the body file
// not; the APIs answer under their prefixes; what nothing serves is a
// JSON 404 under /api/ and a plain one elsewhere.
func TestShell(t *testing.T) {
	h, err := web.New([]web.Page{page("/", "first"), page("/second", "second")}, []web.API{api("one"), api("two")})
	if err != nil {
		t.Fatal(err)
	}
	url := apitest.Serve(t, h)
	nav := `<a href="/" id="nav-first"%s>first</a><a href="/second" id="nav-second"%s>second</a>`
	for path, want := range map[string][]string{
		"/": {"<title>detbus first</title>", `<main id="first-main"></main>`, `<script src="/ui/common.js" defer></script>`,
			`<script src="/ui/first.js" defer></script>`, `<link rel="stylesheet" href="/ui/first.css">`,
			strings.ReplaceAll(strings.Replace(nav, "%s", ` aria-current="page"`, 1), "%s", ""), `id="status"`, `id="logout"`},
		"/second":        {"<title>detbus second</title>", `<main id="second-main"></main>`, `<script src="/ui/second.js" defer></script>`, `href="/second" id="nav-second" aria-current="page"`},
		"/ui/common.js":  {"function request("},
		"/ui/style.css":  {".badge.state-dead"},
		"/ui/first.js":   {`const PAGE = "first"`},
		"/ui/second.css": {"#second-main"},
	} {
		r := apitest.Do(t, url, "GET", path, "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %.300s", path, r.Status, r.Raw)
		}
		for _, w := range want {
			if !strings.Contains(string(r.Raw), w) {
				t.Fatalf("GET %s lacks %s:\n%s", path, w, r.Raw)
			}
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if r := apitest.Do(t, url, "GET", "/second", ""); strings.Contains(string(r.Raw), `id="nav-first" aria-current`) {
		t.Fatalf("/second marks the first page current:\n%s", r.Raw)
	}
	apitest.Do(t, url, "POST", "/api/two/x/y", `{}`).Want(t, http.StatusOK, `"api":"two"`, `"path":"/api/two/x/y"`, `"method":"POST"`)
	apitest.Do(t, url, "GET", "/api/nothing", "").Want(t, http.StatusNotFound, `"error":"no such path"`)
	for _, path := range []string{"/nothing", "/ui/first.html", "/ui/shell.html", "/ui/login.html", "/ui/", "/second/"} {
		if r := apitest.Do(t, url, "GET", path, ""); r.Status != http.StatusNotFound {
			t.Fatalf("GET %s: %d %.200s", path, r.Status, r.Raw)
		}
	}
	if r := apitest.Do(t, url, "POST", "/second", ""); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("POST /second: %d %.200s", r.Status, r.Raw)
	}
}

// TestNewRefuses: New names what is wrong with a page or an API.
func TestNewRefuses(t *testing.T) {
	noBody := page("/x", "x")
	noBody.Body = "missing.html"
	noScript := page("/x", "x")
	noScript.Scripts = []string{"../first.js"}
	clash := page("/y", "y")
	clash.Files = fstest.MapFS{"y.html": {}, "y.js": {}, "y.css": {}, "common.js": {}}
	for _, tc := range []struct {
		pages []web.Page
		apis  []web.API
		want  string
	}{
		{[]web.Page{page("/a", "A")}, nil, `title "A"`},
		{[]web.Page{page("a", "a")}, nil, `path "a"`},
		{[]web.Page{page("/a/", "a")}, nil, `path "/a/"`},
		{[]web.Page{page("/api/a", "a")}, nil, "the node's own"},
		{[]web.Page{page("/login", "a")}, nil, "the node's own"},
		{[]web.Page{page("/a", "a"), page("/a", "b")}, nil, "both want /a"},
		{[]web.Page{page("/a", "a"), page("/b", "a")}, nil, "both want nav-a"},
		{[]web.Page{{Path: "/a", Title: "a", Body: "a.html"}}, nil, "no files"},
		{[]web.Page{noBody}, nil, `no file "missing.html"`},
		{[]web.Page{noScript}, nil, `no file "../first.js"`},
		{[]web.Page{clash}, nil, "common.js"},
		{[]web.Page{page("/a", "a"), func() web.Page { p := page("/b", "b"); p.Files.(fstest.MapFS)["a.js"] = &fstest.MapFile{}; return p }()}, nil, "a.js"},
		{nil, []web.API{{Prefix: "/api/a", Handler: http.NotFoundHandler()}}, `"/api/a"`},
		{nil, []web.API{{Prefix: "/things/", Handler: http.NotFoundHandler()}}, `"/things/"`},
		{nil, []web.API{{Prefix: "/api/a/"}}, "no handler"},
		{nil, []web.API{api("a"), api("a")}, "both want /api/a/"},
	} {
		_, err := web.New(tc.pages, tc.apis)
		if !errors.Is(err, web.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v, %+v) = %v, want an error naming %s", tc.pages, tc.apis, err, tc.want)
		}
	}
}

func TestValidateToken(t *testing.T) {
	const token = "s3cret-token-for-tests"
	for tok, ok := range map[string]bool{"": true, token: true, "short": false, "has a space in it!!": false, "nön-ascii-token-xx": false} {
		err := web.ValidateToken(tok)
		if (err == nil) != ok || (err != nil && !errors.Is(err, web.ErrInvalidOption)) {
			t.Errorf("ValidateToken(%q) = %v", tok, err)
		}
		if _, err := web.Protect(http.NotFoundHandler(), web.Access{Token: tok}); (err == nil) != ok {
			t.Errorf("Protect(%q) = %v", tok, err)
		}
	}
}
