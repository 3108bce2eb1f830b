package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform/board"
	"github.com/detbus/detbus/transport"
)

// TestServeTransformsPage: a node with users serves the transforms page
// and its API behind its access rule: the DET it runs shows there with
// its instance and outputs, for every role that signs in, and for nobody
// else.
func TestServeTransformsPage(t *testing.T) {
	authFile := writeUsers(t, transport.AuthConfig{Users: []transport.User{
		{Name: "ops", Password: "ops-pw", Role: transport.RoleAdmin},
		{Name: "bank-svc", Password: "b-pw", Sources: []string{"bank.commands.>"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader},
	}})
	url, out := startServe(t, "--auth", authFile, "--transform", "bank")
	base := "http://" + uiAddr(t, out.String())
	for i := range 3 {
		cmd := fmt.Sprintf(`{"op":"deposit","id":"d%d","account":"alice","amount":10}`, i)
		if o, err := runCLI(t, "write", "bank.commands.alice", cmd, "--nats", url, "--user", "bank-svc", "--password", "b-pw"); err != nil {
			t.Fatal(err, o)
		}
	}
	get := func(path, user, pw string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	testnats.WaitFor(t, 30*time.Second, "the bank on the board, its three outputs", func() error {
		st, body := get("/api/transforms/dets/bank", "audit", "a-pw")
		var d board.DET
		if st != http.StatusOK || json.Unmarshal(body, &d) != nil {
			return fmt.Errorf("%d %s", st, body)
		}
		if len(d.Instances) != 1 || d.Instances[0].Instance != "detbus-bank" || d.Outputs != 3 || d.State != "running" {
			return fmt.Errorf("%+v", d)
		}
		return nil
	})
	for _, who := range [][2]string{{"ops", "ops-pw"}, {"bank-svc", "b-pw"}, {"audit", "a-pw"}} {
		if st, body := get("/api/transforms/dets", who[0], who[1]); st != http.StatusOK || !strings.Contains(string(body), `"id":"bank"`) {
			t.Fatalf("the list as %s: %d %s", who[0], st, body)
		}
		if st, body := get("/transforms", who[0], who[1]); st != http.StatusOK || !strings.Contains(string(body), "<title>detbus transforms</title>") {
			t.Fatalf("the page as %s: %d %.200s", who[0], st, body)
		}
	}
	for _, path := range []string{"/api/transforms/dets", "/api/transforms/dets/bank", "/transforms"} {
		if st, body := get(path, "", ""); st != http.StatusUnauthorized {
			t.Fatalf("%s without credentials: %d %.200s", path, st, body)
		}
		if st, _ := get(path, "audit", "wrong"); st != http.StatusUnauthorized {
			t.Fatalf("%s with a wrong password: %d", path, st)
		}
	}
}
