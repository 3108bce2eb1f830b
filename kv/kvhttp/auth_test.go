package kvhttp_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/kv/kvhttp"
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
	e.do("GET", api, "", "Cookie: "+kvhttp.SessionCookie+"=forged").Want(t, http.StatusUnauthorized)
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
		if c.Name == kvhttp.SessionCookie {
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

func TestValidateToken(t *testing.T) {
	for tok, ok := range map[string]bool{"": true, token: true, "short": false, "has a space in it!!": false, "nön-ascii-token-xx": false} {
		err := kvhttp.ValidateToken(tok)
		if (err == nil) != ok || (err != nil && !errors.Is(err, kvhttp.ErrInvalidOption)) {
			t.Errorf("ValidateToken(%q) = %v", tok, err)
		}
		if _, err := kvhttp.Protect(http.NotFoundHandler(), tok); (err == nil) != ok {
			t.Errorf("Protect(%q) = %v", tok, err)
		}
	}
}
