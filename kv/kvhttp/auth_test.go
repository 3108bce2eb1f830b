package kvhttp_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/transport"
)

const token = "s3cret-token-for-tests"

// TestToken: with a token, the API answers only requests that carry it as
// a bearer token or hold the session cookie that ?token= or the login form
// gives a browser.
func TestToken(t *testing.T) {
	e := newEnv(t, envConfig{token: token})
	const api = "/api/kv/tables"
	r := e.do("GET", api, "").Want(t, http.StatusUnauthorized, "Authorization: Bearer")
	if r.Header.Get("WWW-Authenticate") != `Bearer realm="detbus"` {
		t.Fatalf("WWW-Authenticate: %q", r.Header.Get("WWW-Authenticate"))
	}
	e.do("GET", api, "", "Authorization: Bearer wrong-token-wrong-token").Want(t, http.StatusUnauthorized)
	e.do("GET", api, "", "Authorization: Basic "+token).Want(t, http.StatusUnauthorized)
	e.do("GET", api+"?token="+token, "").Want(t, http.StatusUnauthorized) // the API takes no token in the URL
	r = e.do("GET", api, "", "Authorization: Bearer "+token).Want(t, http.StatusOK, `"_config"`)
	if r.Header.Get("X-Detbus-Token") != "required" {
		t.Fatalf("X-Detbus-Token: %q", r.Header.Get("X-Detbus-Token"))
	}
	e.do("POST", api, `{"name":"users","crdt":"lww"}`).Want(t, http.StatusUnauthorized)
	e.do("POST", api, `{"name":"users","crdt":"lww"}`, "Authorization: bearer "+token).Want(t, http.StatusCreated)

	// A browser without the token gets the login form.
	r = e.do("GET", "/", "", "Accept: text/html")
	if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Raw), `action="/login"`) {
		t.Fatalf("page without token: %d %s", r.Status, r.Raw)
	}
	// ?token= on a page sets the cookie and redirects to the URL without it.
	r = e.do("GET", "/?token="+token+"&x=1", "", "Accept: text/html")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/?x=1" {
		t.Fatalf("?token=: %d, Location %q", r.Status, r.Header.Get("Location"))
	}
	cookie := sessionCookie(t, r)
	e.do("GET", api, "", "Cookie: "+cookie).Want(t, http.StatusOK)
	e.do("GET", "/", "", "Cookie: "+cookie).Want(t, http.StatusOK)
	e.do("GET", api, "", "Cookie: "+web.SessionCookie+"=forged").Want(t, http.StatusUnauthorized)
	r = e.do("GET", "/?token=wrong", "", "Accept: text/html")
	if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Raw), "not valid") || strings.Contains(string(r.Raw), "wrong") {
		t.Fatalf("wrong ?token=: %d %s", r.Status, r.Raw)
	}

	// The login form sets the cookie and redirects only to local paths.
	login := func(tok, next string) reply {
		form := url.Values{"token": {tok}, "next": {next}}
		req, err := http.NewRequest("POST", e.url+"/login", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		return apitest.Send(t, req)
	}
	if r := login("nope", "/"); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Raw), "wrong token") {
		t.Fatalf("login with a wrong token: %d %s", r.Status, r.Raw)
	}
	for next, want := range map[string]string{"/#users": "/", "/x?y=1": "/x?y=1", "//evil.example/": "/", "https://evil.example/": "/", `/\evil`: "/"} {
		r := login(token, next)
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != want {
			t.Fatalf("login next=%q: %d, Location %q, want %q", next, r.Status, r.Header.Get("Location"), want)
		}
		e.do("GET", api, "", "Cookie: "+sessionCookie(t, r)).Want(t, http.StatusOK)
	}
	// Log out clears the cookie.
	r = e.do("POST", "/logout", "", "Cookie: "+cookie)
	if r.Status != http.StatusSeeOther || !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d, Set-Cookie %q", r.Status, r.Header.Get("Set-Cookie"))
	}
}

func sessionCookie(t *testing.T, r reply) string {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == web.SessionCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Value == "" || strings.Contains(c.Value, token) {
				t.Fatalf("session cookie %+v", c)
			}
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("no session cookie in %v", r.Header)
	return ""
}

// TestLoopbackOnly: without a token, requests addressed to any host but a
// loopback one are refused, so a DNS name rebound to 127.0.0.1 reaches
// nothing.
func TestLoopbackOnly(t *testing.T) {
	e := newEnv(t, envConfig{})
	for host, want := range map[string]int{
		"localhost:8080": 200, "127.0.0.1": 200, "127.8.9.1:1": 200, "[::1]:8080": 200, "app.localhost": 200,
		"evil.example": 403, "evil.example:8080": 403, "10.0.0.1:8080": 403, "localhost.evil.example": 403,
	} {
		req, err := http.NewRequest("GET", e.url+"/api/kv/tables", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		apitest.Send(t, req).Want(t, want)
	}
}

// TestCrossOriginWrites: a browser write from another origin is refused,
// with or without a token; same-origin writes pass.
func TestCrossOriginWrites(t *testing.T) {
	for _, tok := range []string{"", token} {
		e := newEnv(t, envConfig{token: tok})
		auth := "Authorization: Bearer " + tok
		if tok == "" {
			auth = "X-None: 1"
		}
		body := `{"name":"users","crdt":"lww"}`
		e.do("POST", "/api/kv/tables", body, auth, "Sec-Fetch-Site: cross-site").Want(t, http.StatusForbidden)
		e.do("POST", "/api/kv/tables", body, auth, "Origin: https://evil.example").Want(t, http.StatusForbidden)
		e.do("POST", "/api/kv/tables", body, auth, "Sec-Fetch-Site: same-origin").Want(t, http.StatusCreated)
	}
}

// TestLogoutRevokesTheSession: after logging out, the session's cookie,
// copied before, opens nothing.
func TestLogoutRevokesTheSession(t *testing.T) {
	e := newEnv(t, envConfig{token: token})
	const api = "/api/kv/tables"
	r := e.do("GET", "/?token="+token, "", "Accept: text/html")
	cookie := sessionCookie(t, r)
	e.do("GET", api, "", "Cookie: "+cookie).Want(t, http.StatusOK)
	e.do("POST", "/logout", "", "Cookie: "+cookie)
	e.do("GET", api, "", "Cookie: "+cookie).Want(t, http.StatusUnauthorized)
	e.do("POST", api, `{"name":"t","crdt":"lww"}`, "Cookie: "+cookie).Want(t, http.StatusUnauthorized)
	// Another session is not touched by that logout.
	other := sessionCookie(t, e.do("GET", "/?token="+token, "", "Accept: text/html"))
	e.do("GET", api, "", "Cookie: "+other).Want(t, http.StatusOK)
}

// TestUsersSignIn: with the node's users, every request needs credentials
// (loopback included); each user reads everything and writes only the
// tables its role allows on NATS.
func TestUsersSignIn(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("admin-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envConfig{users: []transport.User{
		{Name: "ops", Password: string(hash), Role: transport.RoleAdmin},
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"kv.orders", "orders.>"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader},
	}})
	const api = "/api/kv/tables"
	basic := func(user, pw string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
	}
	e.do("GET", api, "").Want(t, http.StatusUnauthorized)
	e.do("GET", api, "", basic("ops", "wrong")).Want(t, http.StatusUnauthorized)
	e.do("GET", api, "", basic("nobody", "a-pw")).Want(t, http.StatusUnauthorized)
	e.do("POST", api, `{"name":"orders","crdt":"lww"}`, basic("orders-svc", "o-pw")).Want(t, http.StatusForbidden, "kv._config")
	e.do("POST", api, `{"name":"orders","crdt":"lww"}`, basic("ops", "admin-pw")).Want(t, http.StatusCreated)
	e.do("POST", api, `{"name":"users","crdt":"lww"}`, basic("ops", "admin-pw")).Want(t, http.StatusCreated)
	e.do("POST", api+"/orders/ops", `{"op":"set","key":"o1","value":1}`, basic("orders-svc", "o-pw")).Want(t, http.StatusOK)
	e.do("POST", api+"/users/ops", `{"op":"set","key":"root","value":1}`, basic("orders-svc", "o-pw")).Want(t, http.StatusForbidden, "kv.users")
	e.do("POST", api+"/orders/ops", `{"op":"set","key":"o2","value":1}`, basic("audit", "a-pw")).Want(t, http.StatusForbidden)
	e.do("GET", api+"/orders/keys/o1", "", basic("audit", "a-pw")).Want(t, http.StatusOK)
	e.do("GET", api+"/users/keys/root", "", basic("ops", "admin-pw")).Want(t, http.StatusNotFound)
	// The login form: a session with the user's rights.
	form := url.Values{"user": {"orders-svc"}, "password": {"o-pw"}, "next": {"/"}}
	req, err := http.NewRequest("POST", e.url+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	cookie := sessionCookie(t, apitest.Send(t, req))
	e.do("POST", api+"/orders/ops", `{"op":"set","key":"o3","value":1}`, "Cookie: "+cookie).Want(t, http.StatusOK)
	e.do("POST", api+"/users/ops", `{"op":"set","key":"root","value":2}`, "Cookie: "+cookie).Want(t, http.StatusForbidden)
	for _, esk := range []string{"kv.users"} {
		if n, err := e.log.Count(ctxT(t), esk); err != nil || n != 0 {
			t.Fatalf("%s holds %d ops (%v): a refused write was stored", esk, n, err)
		}
	}
}
