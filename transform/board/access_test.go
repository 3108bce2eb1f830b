package board_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/web"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// TestAccessPerRole: behind the node's access rule with users and a
// token, the transforms page and its API need credentials; every role
// reads them (admin, source and reader alike), none writes through them
// (the API serves reads only), and cross-origin browser requests are
// refused.
func TestAccessPerRole(t *testing.T) {
	const token = "a-token-of-twenty-chars"
	e := newEnv(t, asNode(t, web.Access{Token: token, Users: []transport.User{
		{Name: "ops", Password: "ops-pw", Role: transport.RoleAdmin},
		{Name: "tally-svc", Password: "t-pw", Sources: []string{"tally.moves.>"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader},
	}}))
	e.run("a", tally.Spec(), transform.Config{})
	e.move("w1", "cog", 1)
	basic := func(user, pw string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
	}
	admin := basic("ops", "ops-pw")
	e.waitDET("tally", "one output", func(d board.DET) error {
		if d.Outputs != 1 {
			return fmt.Errorf("%d outputs", d.Outputs)
		}
		return nil
	}, admin)

	for _, path := range []string{"/api/transforms/dets", "/api/transforms/dets/tally"} {
		e.get(path).Want(t, http.StatusUnauthorized, "credentials")
		e.get(path, basic("audit", "wrong")).Want(t, http.StatusUnauthorized)
		e.get(path, "Authorization: Bearer not-the-token-at-all").Want(t, http.StatusUnauthorized)
		for who, cred := range map[string]string{"admin": admin, "source": basic("tally-svc", "t-pw"), "reader": basic("audit", "a-pw"),
			"token": "Authorization: Bearer " + token} {
			if r := e.get(path, cred); r.Status != http.StatusOK || !strings.Contains(string(r.Raw), `"tally"`) {
				t.Fatalf("GET %s as the %s: %d %s", path, who, r.Status, r.Raw)
			}
		}
		apitest.Do(t, e.api, "POST", path, `{}`, admin).Want(t, http.StatusMethodNotAllowed)
		apitest.Do(t, e.api, "POST", path, `{}`, admin, "Sec-Fetch-Site: cross-site").Want(t, http.StatusForbidden, "cross-origin")
	}
	// The page: the login form without credentials, the page for a reader.
	if r := e.get("/transforms", "Accept: text/html"); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Raw), "<form") {
		t.Fatalf("the page without credentials: %d %.200s", r.Status, r.Raw)
	}
	r := e.get("/transforms", basic("audit", "a-pw"))
	for _, want := range []string{"<title>detbus transforms</title>", `id="nav-transforms" aria-current="page"`,
		`<script src="/ui/transforms.js" defer></script>`, `<link rel="stylesheet" href="/ui/transforms.css">`, `id="dets"`} {
		if r.Status != http.StatusOK || !strings.Contains(string(r.Raw), want) {
			t.Fatalf("the page as the reader lacks %s: %d %.300s", want, r.Status, r.Raw)
		}
	}
	if r := e.get("/ui/transforms.js", basic("audit", "a-pw")); r.Status != http.StatusOK || !strings.Contains(string(r.Raw), "/api/transforms/dets") {
		t.Fatalf("the script: %d", r.Status)
	}
}

// TestLoopbackOnly: without a token or users, only requests addressed to
// a loopback host are answered.
func TestLoopbackOnly(t *testing.T) {
	e := newEnv(t, asNode(t, web.Access{}))
	e.get("/api/transforms/dets").Want(t, http.StatusOK)
	req, err := http.NewRequestWithContext(ctxT(t), "GET", e.api+"/api/transforms/dets", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "detbus.example.com" // a name rebound to 127.0.0.1
	apitest.Send(t, req).Want(t, http.StatusForbidden, "loopback")
}
