package loghttp_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/transport"
)

const token = "loghttp-test-token-0123"

func basic(user, pw string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// TestAccessAsAttacker: behind the node's access rule every role reads the
// log and nobody writes through it; a request without credentials, with
// wrong ones, with the token in the URL or a forged cookie reads nothing;
// a session ended by logging out reads nothing more, and the live stream
// it held ends.
func TestAccessAsAttacker(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("admin-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envConfig{token: token, users: []transport.User{
		{Name: "ops", Password: string(hash), Role: transport.RoleAdmin},
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"orders.>"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader},
	}})
	e.write("orders.eu", []byte(`{"secret":1}`))
	e.write(transport.Reserved+".checkpoint", []byte(`{}`))
	paths := []string{"/api/log/esks", "/api/log/esks/orders.eu/events", "/api/log/esks/orders.eu/events/0"}
	const live = "/api/log/esks/orders.eu/live"

	// Each role, and the token, reads everything (as on NATS), and
	// writes nothing: the API has no write.
	for who, cred := range map[string]string{
		"admin": basic("ops", "admin-pw"), "source": basic("orders-svc", "o-pw"), "reader": basic("audit", "a-pw"),
		"token": "Authorization: Bearer " + token,
	} {
		for _, p := range paths {
			e.do("GET", p, cred).Want(t, http.StatusOK, "orders.eu")
		}
		e.do("GET", "/api/log/esks", cred).Want(t, http.StatusOK, transport.Reserved+".checkpoint")
		if ev := apitest.Next(t, apitest.Subscribe(t, e.url, live, cred)); ev.Name != "ready" {
			t.Fatalf("%s: live stream starts with %+v", who, ev)
		}
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			e.do(m, "/api/log/esks/orders.eu/events", cred).Want(t, http.StatusMethodNotAllowed)
		}
	}

	// Without valid credentials: nothing.
	for what, hdr := range map[string][]string{
		"no credentials":        nil,
		"a wrong password":      {basic("ops", "wrong")},
		"an unknown user":       {basic("mallory", "a-pw")},
		"a wrong token":         {"Authorization: Bearer wrong-token-wrong-token"},
		"the password as token": {"Authorization: Bearer a-pw"},
		"a forged cookie":       {"Cookie: " + web.SessionCookie + "=forged"},
		"an empty cookie":       {"Cookie: " + web.SessionCookie + "="},
	} {
		for _, p := range append(paths, live) {
			if r := e.do("GET", p, hdr...); r.Status != http.StatusUnauthorized || strings.Contains(string(r.Raw), "secret") {
				t.Fatalf("%s, GET %s: %d %s", what, p, r.Status, r.Raw)
			}
		}
	}
	e.do("GET", "/api/log/esks?token="+token).Want(t, http.StatusUnauthorized)

	// A session: it reads, and after logging out neither it nor the live
	// stream it held reads anything.
	form := url.Values{"user": {"audit"}, "password": {"a-pw"}, "next": {"/log"}}
	req, err := http.NewRequest("POST", e.url+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := apitest.Send(t, req)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/log" {
		t.Fatalf("login: %d %s", r.Status, r.Header.Get("Location"))
	}
	var cookie string
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == web.SessionCookie {
			cookie = "Cookie: " + c.Name + "=" + c.Value
		}
	}
	e.do("GET", "/api/log/esks", cookie).Want(t, http.StatusOK)
	stream := apitest.Subscribe(t, e.url, live, cookie)
	if ev := apitest.Next(t, stream); ev.Name != "ready" {
		t.Fatalf("the session's live stream starts with %+v", ev)
	}
	e.do("POST", "/logout", cookie)
	e.write("orders.eu", []byte(`{"secret":2}`))
	deadline := time.After(20 * time.Second)
	for ended := false; !ended; {
		select {
		case ev, ok := <-stream:
			if ok && strings.Contains(ev.Data, `"secret":2`) {
				t.Fatalf("the live stream of an ended session delivered %+v", ev)
			}
			ended = !ok
		case <-deadline:
			t.Fatal("the live stream of an ended session is still open")
		}
	}
	for _, p := range append(paths, live) {
		e.do("GET", p, cookie).Want(t, http.StatusUnauthorized)
	}
}

// TestLoopbackOnly: without a token or users, only requests addressed to
// a loopback host read the log.
func TestLoopbackOnly(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.write("orders.eu", []byte(`{}`))
	for host, want := range map[string]int{"localhost:1": 200, "127.0.0.1": 200, "evil.example": 403, "localhost.evil.example": 403} {
		req, err := http.NewRequest("GET", e.url+"/api/log/esks/orders.eu/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		apitest.Send(t, req).Want(t, want)
	}
}
