package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestServeLogPage: a node serves the log page and its API beside the
// other pages, over its own log: an event written by the CLI is listed
// with its ESK and read back at its index; the nav of every page names
// the log page.
func TestServeLogPage(t *testing.T) {
	url, out := startServe(t)
	base := uiURL(t, out)
	if o, err := runCLI(t, "write", "orders.eu", `{"side":"buy","qty":3}`, "--nats", url); err != nil {
		t.Fatal(err, o)
	}
	if st, body := httpDo(t, "GET", base+"/api/log/esks?prefix=orders.", "", ""); st != http.StatusOK || !strings.Contains(body, `"esk":"orders.eu","count":1`) {
		t.Fatalf("ESKs: %d %s", st, body)
	}
	if st, body := httpDo(t, "GET", base+"/api/log/esks/orders.eu/events", "", ""); st != http.StatusOK || !strings.Contains(body, `"index":0`) || !strings.Contains(body, `"json":{"side":"buy","qty":3}`) {
		t.Fatalf("events: %d %s", st, body)
	}
	for _, path := range []string{"/", "/tasks", "/log"} {
		if st, body := httpDo(t, "GET", base+path, "", ""); st != http.StatusOK || !strings.Contains(body, `<a href="/log" id="nav-log"`) {
			t.Fatalf("GET %s: %d %.300s", path, st, body)
		}
	}
	if st, body := httpDo(t, "GET", base+"/log", "", ""); !strings.Contains(body, "<title>detbus log</title>") {
		t.Fatalf("log page: %d %.200s", st, body)
	}
}
