package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/detbus/detbus/internal/httpapi"
	"github.com/detbus/detbus/transport"
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

// Access is who may use a node's HTTP API and UI.
type Access struct {
	// Token, when set, is a bearer token that opens everything, as an
	// admin.
	Token string
	// Users, when set, are the node's NATS users: each may sign in with
	// its name and password (HTTP Basic authentication, or the login
	// form), reads everything, and writes only what its role lets it
	// write on NATS (an admin every ESK, a source its sources, a reader
	// nothing). NKey users have no password to sign in with.
	Users []transport.User
}

// Protect returns next guarded by a node's access rule (see the package
// documentation, Access). With a token or users, requests need
// "Authorization: Bearer <token>", "Authorization: Basic" with a user's
// name and password, or the session cookie that POST /login (or ?token=
// on a page) gives a browser; POST /logout ends the session on the server,
// so a copied cookie stops working, and ends the requests still open on
// it (event streams). Sessions last 30 days at most. With
// neither, only requests addressed to a loopback host are served. A
// request carries its caller's write rights for the handlers
// ([httpapi.MayWrite]). Cross-origin browser writes are rejected either
// way. It returns an error wrapping [ErrInvalidOption] for a token that
// [ValidateToken] rejects.
func Protect(next http.Handler, a Access) (http.Handler, error) {
	if err := ValidateToken(a.Token); err != nil {
		return nil, err
	}
	var h http.Handler
	if a.Token == "" && len(a.Users) == 0 {
		h = loopbackOnly{next}
	} else {
		h = &guard{next: next, token: []byte(a.Token), users: a.Users, sessions: map[string]session{}}
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

// guard serves requests that carry the token, a user's credentials or a
// live session.
type guard struct {
	next  http.Handler
	token []byte
	users []transport.User

	mu       sync.Mutex
	sessions map[string]session // by session id
}

// session is a signed-in browser: who, until when. Its context ends
// when the session does (log out, expiry, eviction), and with it every
// request still open on the session, such as an event stream.
type session struct {
	who     principal
	expires time.Time
	ctx     context.Context
	end     context.CancelFunc
}

// sessionRequest is the context of a request made on a session: it ends
// when the request or the session does, and carries the request's values.
type sessionRequest struct {
	context.Context // ends with the session (a child of its context) or the request
	request         context.Context
}

func (c sessionRequest) Value(key any) any { return c.request.Value(key) }

// drop ends the session id, if any. g.mu must be held.
func (g *guard) drop(id string) {
	if s, ok := g.sessions[id]; ok {
		s.end()
		delete(g.sessions, id)
	}
}

// principal is who made a request, and what it may write.
type principal struct {
	name  string
	admin bool
	user  *transport.User
}

// mayWrite is the principal's write check for the handlers.
func (p principal) mayWrite(esk string) error {
	if p.admin {
		return nil
	}
	if p.user != nil && p.user.Role != transport.RoleReader && p.user.Role != transport.RoleAdmin && esk != transport.Reserved && !strings.HasPrefix(esk, transport.Reserved+".") {
		for _, src := range p.user.Sources {
			if transport.MatchESK(src, esk) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s may not write it", transport.ErrForbidden, p.name)
}

// maxSessions bounds the sessions a guard keeps; the oldest goes first.
const maxSessions = 10000

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		g.login(w, r)
		return
	case r.URL.Path == "/logout" && r.Method == http.MethodPost:
		if c, err := r.Cookie(SessionCookie); err == nil {
			g.mu.Lock()
			g.drop(c.Value)
			g.mu.Unlock()
		}
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if t, ok := r.URL.Query()["token"]; ok && r.Method == http.MethodGet && !isAPI(r) {
		if !g.validToken(t[0]) {
			g.deny(w, r, "the token in the link is not valid")
			return
		}
		g.setSession(w, r, principal{name: "token", admin: true})
		http.Redirect(w, r, withoutToken(r.URL), http.StatusSeeOther)
		return
	}
	if who, sess, ok := g.authorized(r); ok {
		// Tells the UI to offer a log-out.
		w.Header().Set("X-Detbus-Token", "required")
		ctx := r.Context()
		if sess != nil {
			// The request ends with its session: by the time a log-out
			// is answered, the session's requests are cancelled.
			done, cancel := context.WithCancel(sess)
			defer cancel()
			defer context.AfterFunc(ctx, cancel)()
			ctx = sessionRequest{done, ctx}
		}
		g.next.ServeHTTP(w, r.WithContext(httpapi.WithWriteCheck(ctx, who.mayWrite)))
		return
	}
	g.deny(w, r, "")
}

func (g *guard) validToken(t string) bool {
	return len(g.token) > 0 && subtle.ConstantTimeCompare([]byte(t), g.token) == 1
}

// user returns the user name and password identify, if any.
func (g *guard) user(name, password string) (principal, bool) {
	for i := range g.users {
		u := &g.users[i]
		if u.Name == "" || u.NKey != "" || subtle.ConstantTimeCompare([]byte(u.Name), []byte(name)) != 1 {
			continue
		}
		if !passwordMatches(u.Password, password) {
			return principal{}, false
		}
		return principal{name: u.Name, admin: u.Role == transport.RoleAdmin, user: u}, true
	}
	return principal{}, false
}

// passwordMatches checks a password against a stored one, plain or a
// bcrypt hash (as NATS takes them).
func passwordMatches(stored, given string) bool {
	if strings.HasPrefix(stored, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(stored), []byte(given)) == nil
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

// authorized returns who made r, and the context of the session it
// came on (nil for credentials in the request).
func (g *guard) authorized(r *http.Request) (principal, context.Context, bool) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, t, ok := strings.Cut(auth, " ")
		switch {
		case ok && strings.EqualFold(scheme, "Bearer") && g.validToken(strings.TrimSpace(t)):
			return principal{name: "token", admin: true}, nil, true
		case ok && strings.EqualFold(scheme, "Basic"):
			if name, password, ok := r.BasicAuth(); ok {
				who, ok := g.user(name, password)
				return who, nil, ok
			}
		}
		return principal{}, nil, false
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return principal{}, nil, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.sessions[c.Value]
	if !ok || time.Now().After(s.expires) {
		g.drop(c.Value)
		return principal{}, nil, false
	}
	return s.who, s.ctx, true
}

// setSession starts a session for who: a random id, kept here and in the
// browser's cookie.
func (g *guard) setSession(w http.ResponseWriter, r *http.Request, who principal) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		httpapi.WriteJSON(w, http.StatusInternalServerError, httpapi.ErrorBody{Error: "no randomness for a session"})
		return
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	g.mu.Lock()
	if len(g.sessions) >= maxSessions {
		var oldest string
		for k, s := range g.sessions {
			if oldest == "" || s.expires.Before(g.sessions[oldest].expires) {
				oldest = k
			}
		}
		g.drop(oldest)
	}
	expires := now.Add(sessionMaxAge)
	ctx, end := context.WithDeadline(context.Background(), expires)
	g.sessions[id] = session{who: who, expires: expires, ctx: ctx, end: end}
	g.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/",
		MaxAge: int(sessionMaxAge / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (g *guard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		g.deny(w, r, "the form does not parse")
		return
	}
	var who principal
	ok := false
	if name := r.PostForm.Get("user"); name != "" {
		who, ok = g.user(name, r.PostForm.Get("password"))
		if !ok {
			g.deny(w, r, "wrong user or password")
			return
		}
	} else if ok = g.validToken(r.PostForm.Get("token")); ok {
		who = principal{name: "token", admin: true}
	} else {
		g.deny(w, r, "wrong token")
		return
	}
	g.setSession(w, r, who)
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
	if len(g.users) > 0 {
		w.Header().Add("WWW-Authenticate", `Basic realm="detbus"`)
	}
	if isAPI(r) || !strings.Contains(r.Header.Get("Accept"), "text/html") {
		msg := "missing or wrong token: send Authorization: Bearer <token>"
		if len(g.users) > 0 {
			msg = "missing or wrong credentials: send HTTP Basic authentication as a user of the node, or Authorization: Bearer <token>"
		}
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
	_ = loginPage.Execute(w, struct {
		Problem, Next string
		Users         bool
	}{problem, next, len(g.users) > 0})
}

var loginPage = template.Must(template.ParseFS(shellFiles, "ui/login.html"))
