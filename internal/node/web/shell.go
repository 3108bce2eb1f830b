package web

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/detbus/detbus/internal/httpapi"
)

// ErrInvalidOption is wrapped by the errors of [Protect], [ValidateToken]
// and [New] about their arguments.
var ErrInvalidOption = errors.New("web: invalid option")

// Page is one page of the UI, plugged into the shell by [New]. The shell
// serves it at Path as a whole document: its title, the shell's header
// (the nav that lists every page, the live status, the log-out button),
// then Body; the shell's common.js and style.css load before the page's
// own scripts and styles.
type Page struct {
	// Path is where the page is served: "/" or "/name" (lower-case
	// letters, digits and '-', no trailing slash).
	Path string
	// Title names the page in the nav and in the document's title
	// ("detbus <Title>"): one word of lower-case letters, digits and
	// '-'. The nav's link has the id "nav-<Title>".
	Title string
	// Files holds the page's files. Every file in it except Body is
	// served as /ui/<name>, so a page's file must not have the name of
	// another page's or of the shell's (common.js, style.css).
	Files fs.FS
	// Body is the name in Files of the HTML that follows the header in
	// the document's body.
	Body string
	// Scripts and Styles are names in Files of the page's scripts and
	// style sheets, loaded after the shell's, in order.
	Scripts []string
	Styles  []string
}

// Dir returns the files under dir of fsys, for a [Page]'s Files: a page
// embeds its folder (//go:embed ui) and hands Dir(files, "ui"). It panics
// when dir is not a folder of fsys, which the embed makes sure of when
// the program is built.
func Dir(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err == nil {
		_, err = fs.ReadDir(sub, ".")
	}
	if err != nil {
		panic(fmt.Sprintf("web: the page files %s: %v", dir, err))
	}
	return sub
}

// API is a JSON API plugged into the shell by [New]: Handler answers
// every request whose path starts with Prefix, whatever its method.
type API struct {
	// Prefix is "/api/<name>/", such as "/api/kv/".
	Prefix  string
	Handler http.Handler
}

// shellFiles holds the shell's own files: the document around every page
// (shell.html), what every page shares (common.js, style.css), and the
// login page that [Protect] shows.
//
//go:embed ui
var shellFiles embed.FS

// contentSecurityPolicy lets the UI load only its own scripts and styles
// and talk only to this server.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

var (
	shellPage = template.Must(template.ParseFS(shellFiles, "ui/shell.html"))
	pagePath  = regexp.MustCompile(`^/([a-z0-9-]+(/[a-z0-9-]+)*)?$`)
	pageTitle = regexp.MustCompile(`^[a-z0-9-]+$`)
	apiPrefix = regexp.MustCompile(`^/api/[a-z0-9-]+/$`)
	// reserved are the paths the shell and the access rule answer
	// themselves.
	reserved = []string{"/api", "/ui", "/login", "/logout", "/metrics", "/healthz"}
)

// New returns the handler of a node's UI and APIs: each page at its
// path, the files of the shell and of the pages under /ui/, and each API
// under its prefix. A path nothing answers gets a JSON 404 under /api/,
// a plain one elsewhere. New does no authentication: wrap the handler
// with [Protect].
//
// Errors wrap [ErrInvalidOption]: a path, title or prefix that is not
// well formed or is taken twice, a missing Body, script or style, a
// file that two pages or a page and the shell both name, a nil Handler.
func New(pages []Page, apis []API) (http.Handler, error) {
	shell, err := fs.Sub(shellFiles, "ui")
	if err != nil {
		return nil, err
	}
	files := map[string]fs.FS{"common.js": shell, "style.css": shell}
	mux := http.NewServeMux()
	taken := map[string]string{} // path or prefix -> what has it
	take := func(key, what string) error {
		if prev, dup := taken[key]; dup {
			return fmt.Errorf("%w: %s and %s both want %s", ErrInvalidOption, prev, what, key)
		}
		taken[key] = what
		return nil
	}
	docs := make([][]byte, len(pages))
	for i, p := range pages {
		what := fmt.Sprintf("page %q", p.Title)
		if err := p.validate(); err != nil {
			return nil, err
		}
		if err := take(p.Path, what); err != nil {
			return nil, err
		}
		if err := take("nav-"+p.Title, what); err != nil {
			return nil, err
		}
		err := fs.WalkDir(p.Files, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || name == p.Body {
				return err
			}
			if _, dup := files[name]; dup {
				return fmt.Errorf("%w: %s has a file %s that the shell or another page already serves as /ui/%s", ErrInvalidOption, what, name, name)
			}
			files[name] = p.Files
			return nil
		})
		if err != nil {
			return nil, err
		}
		if docs[i], err = render(pages, i); err != nil {
			return nil, err
		}
	}
	for _, a := range apis {
		if !apiPrefix.MatchString(a.Prefix) {
			return nil, fmt.Errorf("%w: API prefix %q: want /api/<name>/ with a name of lower-case letters, digits and '-'", ErrInvalidOption, a.Prefix)
		}
		if a.Handler == nil {
			return nil, fmt.Errorf("%w: API %s has no handler", ErrInvalidOption, a.Prefix)
		}
		if err := take(a.Prefix, "API "+a.Prefix); err != nil {
			return nil, err
		}
		mux.Handle(a.Prefix, a.Handler)
	}
	for i, p := range pages {
		pattern := "GET " + p.Path
		if p.Path == "/" {
			pattern = "GET /{$}"
		}
		mux.Handle(pattern, uiHeaders(serveDoc(docs[i])))
	}
	mux.Handle("GET /ui/{file...}", uiHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		fsys, ok := files[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, fsys, name)
	})))
	return httpapi.Mux(mux, isAPI), nil
}

func (p Page) validate() error {
	switch {
	case !pageTitle.MatchString(p.Title):
		return fmt.Errorf("%w: page title %q: want one word of lower-case letters, digits and '-'", ErrInvalidOption, p.Title)
	case !pagePath.MatchString(p.Path):
		return fmt.Errorf("%w: page %q: path %q: want / or /name, of lower-case letters, digits and '-'", ErrInvalidOption, p.Title, p.Path)
	case p.Files == nil:
		return fmt.Errorf("%w: page %q has no files", ErrInvalidOption, p.Title)
	}
	for _, r := range reserved {
		if p.Path == r || strings.HasPrefix(p.Path, r+"/") {
			return fmt.Errorf("%w: page %q: path %s is the node's own", ErrInvalidOption, p.Title, p.Path)
		}
	}
	for _, name := range slices.Concat([]string{p.Body}, p.Scripts, p.Styles) {
		if st, err := fs.Stat(p.Files, name); err != nil || st.IsDir() || !fs.ValidPath(name) || path.Clean(name) != name {
			return fmt.Errorf("%w: page %q: no file %q in its files", ErrInvalidOption, p.Title, name)
		}
	}
	return nil
}

// navLink is one entry of the nav.
type navLink struct {
	Path, Title string
	Current     bool
}

// render makes the document of pages[i].
func render(pages []Page, i int) ([]byte, error) {
	p := pages[i]
	body, err := fs.ReadFile(p.Files, p.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: page %q: %v", ErrInvalidOption, p.Title, err)
	}
	nav := make([]navLink, len(pages))
	for j, q := range pages {
		nav[j] = navLink{Path: q.Path, Title: q.Title, Current: j == i}
	}
	var buf bytes.Buffer
	err = shellPage.Execute(&buf, struct {
		Page Page
		Nav  []navLink
		Body template.HTML // the page's own file, embedded in the binary
	}{p, nav, template.HTML(body)})
	return buf.Bytes(), err
}

func serveDoc(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(doc)
	})
}

// uiHeaders sets the headers of every UI document and file: the content
// security policy, and revalidation so that a new binary's UI is picked
// up.
func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

func isAPI(r *http.Request) bool {
	return r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/")
}
