package web_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
)

// TestLogoutEndsOpenRequests: a request still open on a session (an event
// stream, say) ends with the session: by the time the log-out is
// answered its context is done. It keeps the request's own context
// values, and a request with credentials of its own is not touched.
func TestLogoutEndsOpenRequests(t *testing.T) {
	const token = "s3cret-token-for-tests"
	open := make(chan context.Context, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open <- r.Context()
		<-r.Context().Done()
	})
	protected, err := web.Protect(h, web.Access{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	url := apitest.Serve(t, protected)
	r := apitest.Do(t, url, "GET", "/?token="+token, "", "Accept: text/html")
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == web.SessionCookie {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("no session from ?token=: %d %v", r.Status, r.Header)
	}
	wait := func(auth func(*http.Request)) context.Context {
		req, err := http.NewRequestWithContext(apitest.Ctx(t), "GET", url+"/api/wait", nil)
		if err != nil {
			t.Fatal(err)
		}
		auth(req)
		go func() {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		return <-open
	}
	onSession := wait(func(r *http.Request) { r.AddCookie(cookie) })
	withToken := wait(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) })
	if onSession.Value(http.ServerContextKey) == nil {
		t.Fatal("the request on a session lost its context's values")
	}
	if onSession.Err() != nil || withToken.Err() != nil {
		t.Fatal("a request ended before the log-out")
	}
	apitest.Do(t, url, "POST", "/logout", "", "Cookie: "+cookie.Name+"="+cookie.Value)
	if onSession.Err() == nil {
		t.Fatal("the session's request is still open after the log-out was answered")
	}
	if withToken.Err() != nil {
		t.Fatal("a request with the token ended with another's session")
	}
}
