package kvhttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/detbus/detbus/internal/httpapi"
)

// SessionCookie is the name of the cookie that [Protect] gives a browser
// that presented the token.
const SessionCookie = "detbus_session"

// MinTokenLength is the shortest token [ValidateToken] accepts.
const MinTokenLength = 16

const sessionMaxAge = 30 * 24 * time.Hour

// ValidateToken reports whether token can guard a server: at least
// MinTokenLength bytes of printable ASCII without spaces. The empty token
// means none and is valid. Errors wrap [ErrInvalidOption].
func ValidateToken(token string) error {
	if token == "" {
		return nil
	}
	if len(token) < MinTokenLength {
		return fmt.Errorf("%w: the token has %d characters, want at least %d", ErrInvalidOption, len(token), MinTokenLength)
	}
	for _, c := range []byte(token) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%w: the token must be printable ASCII without spaces", ErrInvalidOption)
		}
	}
	return nil
}

// Protect returns next guarded by a node's access rule (see the package
// documentation, Access): with a token, requests need
// "Authorization: Bearer <token>" or the session cookie, and Protect
// serves POST /login and POST /logout and takes ?token= on pages; without
// one, only requests addressed to a loopback host are served. Cross-origin
// browser writes are rejected either way. It returns an error wrapping
// [ErrInvalidOption] for a token that [ValidateToken] rejects.
func Protect(next http.Handler, token string) (http.Handler, error) {
	if err := ValidateToken(token); err != nil {
		return nil, err
	}
	var h http.Handler
	if token == "" {
		h = loopbackOnly{next}
	} else {
		mac := hmac.New(sha256.New, []byte(token))
		mac.Write([]byte("detbus kvhttp session"))
		h = &guard{next: next, token: []byte(token), session: base64.RawURLEncoding.EncodeToString(mac.Sum(nil))}
	}
	return httpapi.CrossOriginProtection(h), nil
}

// loopbackOnly serves requests whose Host is a loopback name.
type loopbackOnly struct{ next http.Handler }

func (l loopbackOnly) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isLoopbackHost(r.Host) {
		httpapi.WriteJSON(w, http.StatusForbidden, httpapi.ErrorBody{Error: fmt.Sprintf(
			"host %q not allowed: a server without a token answers only requests addressed to localhost or a loopback address", r.Host)})
		return
	}
	l.next.ServeHTTP(w, r)
}

// isLoopbackHost reports whether a Host header names this machine's
// loopback interface.
func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guard serves requests that carry the token or the session cookie.
type guard struct {
	next    http.Handler
	token   []byte
	session string
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		g.login(w, r)
		return
	case r.URL.Path == "/logout" && r.Method == http.MethodPost:
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if t, ok := r.URL.Query()["token"]; ok && r.Method == http.MethodGet && !isAPI(r) {
		if !g.validToken(t[0]) {
			g.deny(w, r, "the token in the link is not valid")
			return
		}
		g.setSession(w, r)
		http.Redirect(w, r, withoutToken(r.URL), http.StatusSeeOther)
		return
	}
	if g.authorized(r) {
		// Tells the UI to offer a log-out.
		w.Header().Set("X-Detbus-Token", "required")
		g.next.ServeHTTP(w, r)
		return
	}
	g.deny(w, r, "")
}

func (g *guard) validToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), g.token) == 1
}

func (g *guard) authorized(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, t, ok := strings.Cut(auth, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && g.validToken(strings.TrimSpace(t))
	}
	c, err := r.Cookie(SessionCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(g.session)) == 1
}

func (g *guard) setSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: g.session, Path: "/",
		MaxAge: int(sessionMaxAge / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (g *guard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || !g.validToken(r.PostForm.Get("token")) {
		g.deny(w, r, "wrong token")
		return
	}
	g.setSession(w, r)
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther)
}

// localPath returns p if it is a path on this server, else "/": a login
// never redirects elsewhere.
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(p, "//") || strings.ContainsRune(p, '\\') {
		return "/"
	}
	return u.RequestURI()
}

// withoutToken returns u's path and query less the token parameter.
func withoutToken(u *url.URL) string {
	v := *u
	q := v.Query()
	q.Del("token")
	v.RawQuery = q.Encode()
	return v.RequestURI()
}

// deny answers 401: a login form for a browser asking for a page, a JSON
// error otherwise.
func (g *guard) deny(w http.ResponseWriter, r *http.Request, problem string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="detbus"`)
	if isAPI(r) || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		msg := "missing or wrong token: send Authorization: Bearer <token>"
		if problem != "" {
			msg = problem
		}
		httpapi.WriteJSON(w, http.StatusUnauthorized, httpapi.ErrorBody{Error: msg})
		return
	}
	next := withoutToken(r.URL)
	if r.URL.Path == "/login" {
		next = localPath(r.PostFormValue("next"))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = loginPage.Execute(w, struct{ Problem, Next string }{problem, next})
}

var loginPage = template.Must(template.ParseFS(assets, "ui/login.html"))
