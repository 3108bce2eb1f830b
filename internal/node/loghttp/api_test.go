package loghttp_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/loghttp"
	"github.com/detbus/detbus/transport"
)

// TestESKs: the list names the log's ESKs in byte order with their counts
// and last events, by prefix and page by page.
func TestESKs(t *testing.T) {
	e := newEnv(t, envConfig{})
	var last transport.Position
	for _, esk := range []string{"orders.eu", "z", "orders.eu", "a/b.c", "orders.us", "orders.eu", "z"} {
		p := e.write(esk, []byte(`{}`))
		if esk == "orders.eu" {
			last = p
		}
	}
	r := e.do("GET", "/api/log/esks").Want(t, http.StatusOK)
	items := r.List("esks")
	if got := fmt.Sprint(field(items, "esk")); got != "[a/b.c orders.eu orders.us z]" {
		t.Fatalf("ESKs %s", got)
	}
	if got := fmt.Sprint(field(items, "count")); got != "[1 3 1 2]" {
		t.Fatalf("counts %s", got)
	}
	if items[1]["last_seq"] != float64(last.Seq) || items[1]["last_time"] == nil {
		t.Fatalf("orders.eu: %v, want last seq %d", items[1], last.Seq)
	}
	if r.Num("total") != 4 || r.At("more") != false || r.Num("log.events") != 7 || r.Num("log.esks") != 4 || r.Num("log.last_seq") != 7 {
		t.Fatalf("list: %s", r.Raw)
	}
	r = e.do("GET", "/api/log/esks?prefix=orders.&limit=1").Want(t, http.StatusOK, `"esk":"orders.eu"`, `"total":2`, `"more":true`, `"next":"orders.eu"`)
	e.do("GET", "/api/log/esks?prefix=orders.&limit=1&after="+r.Str("next")).Want(t, http.StatusOK, `"esk":"orders.us"`, `"more":false`)
	e.do("GET", "/api/log/esks?prefix=nothing").Want(t, http.StatusOK, `"esks":[]`, `"total":0`)
	for q, want := range map[string]string{
		"limit=0":                            "limit",
		"limit=1001":                         "limit",
		"prefix=a%20b":                       "byte 0x20",
		"prefix=orders.%3E":                  "wildcard",
		"after=%C3%A9":                       "byte 0xc3",
		"prefix=" + strings.Repeat("x", 201): "201 bytes",
	} {
		e.do("GET", "/api/log/esks?"+q).Want(t, http.StatusBadRequest, want)
	}
	e.do("POST", "/api/log/esks").Want(t, http.StatusMethodNotAllowed)
	e.do("GET", "/api/log/nothing").Want(t, http.StatusNotFound)
}

// TestEvents: a page of an ESK's events, from an index, from a stream
// position or at its end, each event with its position, times, headers
// and payload shown by its content type.
func TestEvents(t *testing.T) {
	e := newEnv(t, envConfig{})
	mp, err := transport.Msgpack.Marshal(map[string]any{"n": 1, "b": []byte{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	big := []byte(`{"big":"` + strings.Repeat("x", 100<<10) + `"}`)
	payloads := []struct {
		data []byte
		opts []transport.WriteOption
	}{
		{[]byte(`{"i":0}`), []transport.WriteOption{transport.WithHLC(), transport.WithHeader("X-Trace", "t0")}},
		{mp, []transport.WriteOption{transport.WithContentType(transport.ContentTypeMsgpack)}},
		{[]byte("hello\nworld"), []transport.WriteOption{transport.WithContentType("text/plain; charset=utf-8")}},
		{[]byte{0, 1, 2, 0xff}, nil},
		{[]byte{0xc1}, []transport.WriteOption{transport.WithContentType(transport.ContentTypeMsgpack)}},
		{nil, nil},
		{big, nil},
	}
	var pos []transport.Position
	var between []transport.Position // an event of another ESK after each
	for i := range 30 {
		data, opts := []byte(fmt.Sprintf(`{"i":%d}`, i)), []transport.WriteOption(nil)
		if i < len(payloads) {
			data, opts = payloads[i].data, payloads[i].opts
		}
		pos = append(pos, e.write("shop.eu", data, opts...))
		between = append(between, e.write("shop.us", []byte(`{}`)))
	}
	const path = "/api/log/esks/shop.eu/events"
	r := e.do("GET", path).Want(t, http.StatusOK, `"esk":"shop.eu"`, `"count":30`, `"from":0`, `"more_before":false`, `"more_after":false`)
	evs := r.List("events")
	if len(evs) != 30 {
		t.Fatalf("%d events on the last page", len(evs))
	}
	for i, ev := range evs {
		if ev["index"] != float64(i) || ev["seq"] != float64(pos[i].Seq) {
			t.Fatalf("event %d: %v, want %+v", i, ev, pos[i])
		}
	}
	show := func(ev map[string]any) string {
		b, _ := json.Marshal(ev)
		if len(b) > 300 {
			b = b[:300]
		}
		return string(b)
	}
	for i, want := range []map[string]any{
		{"format": "json", "content_type": ""},
		{"format": "msgpack", "content_type": transport.ContentTypeMsgpack},
		{"format": "text", "text": "hello\nworld"},
		{"format": "bytes", "hex": "000102ff", "problem": "not valid JSON"},
		{"format": "bytes", "hex": "c1"},
		{"format": "empty", "size": float64(0)},
		{"format": "text", "truncated": true},
	} {
		for k, v := range want {
			if evs[i][k] != v {
				t.Errorf("event %d: %s = %v, want %v: %s", i, k, evs[i][k], v, show(evs[i]))
			}
		}
	}
	if p, _ := evs[4]["problem"].(string); !strings.Contains(p, "msgpack that does not decode") || !strings.Contains(p, "0xc1") {
		t.Errorf("event 4: problem %q", p)
	}
	if fmt.Sprint(evs[0]["json"]) != "map[i:0]" {
		t.Errorf("event 0: json %v", evs[0]["json"])
	}
	if got := evs[1]["json"]; fmt.Sprint(got) != "map[b:map[$bin:AQI=] n:1]" {
		t.Errorf("msgpack event shown as %v", got)
	}
	if evs[0]["hlc_header"] != true || evs[0]["headers"].(map[string]any)["X-Trace"] == nil || evs[7]["hlc_header"] != false {
		t.Errorf("headers: %s / %s", show(evs[0]), show(evs[7]))
	}
	if evs[6]["truncated"] != true || len(evs[6]["text"].(string)) != loghttp.PreviewBytes || evs[6]["size"] != float64(len(big)) {
		t.Errorf("a big payload in a page: truncated %v, %d bytes of text, size %v", evs[6]["truncated"], len(evs[6]["text"].(string)), evs[6]["size"])
	}
	stored, err := time.Parse(time.RFC3339Nano, evs[7]["stored"].(string))
	if err != nil || time.Since(stored) > time.Minute || evs[7]["time"] != evs[7]["stored"] {
		t.Errorf("times of an event without HLC: %s", show(evs[7]))
	}

	// Pages by index and by position.
	page := func(q string) (from float64, indices []any, r reply) {
		r = e.do("GET", path+"?"+q).Want(t, http.StatusOK)
		return r.Num("from"), field(r.List("events"), "index"), r
	}
	if from, idx, r := page("limit=10"); from != 20 || len(idx) != 10 || r.At("more_before") != true || r.At("more_after") != false {
		t.Fatalf("last 10: from %v %v %s", from, idx, r.Raw)
	}
	if from, idx, r := page("from=5&limit=3"); from != 5 || fmt.Sprint(idx) != "[5 6 7]" || r.At("more_before") != true || r.At("more_after") != true {
		t.Fatalf("from 5: %v %v", from, idx)
	}
	if from, idx, _ := page(fmt.Sprintf("seq=%d&limit=2", between[10].Seq)); from != 11 || fmt.Sprint(idx) != "[11 12]" {
		t.Fatalf("from the position after index 10: %v %v", from, idx)
	}
	if from, idx, _ := page(fmt.Sprintf("seq=%d&limit=2", pos[4].Seq)); from != 4 || fmt.Sprint(idx) != "[4 5]" {
		t.Fatalf("from the position of index 4: %v %v", from, idx)
	}
	if from, idx, _ := page("seq=1000000&limit=2"); from != 28 || fmt.Sprint(idx) != "[28 29]" {
		t.Fatalf("from a position past the end: %v %v", from, idx)
	}
	if from, idx, r := page("from=40"); from != 40 || len(idx) != 0 || r.Num("count") != 30 {
		t.Fatalf("from past the end: %v %v", from, idx)
	}
	e.do("GET", "/api/log/esks/shop.none/events").Want(t, http.StatusOK, `"count":0`, `"events":[]`)

	// One event, whole.
	r = e.do("GET", path+"/6").Want(t, http.StatusOK, `"esk":"shop.eu"`, `"index":6`, `"format":"json"`)
	if r.At("truncated") != nil || len(r.At("json.big").(string)) != 100<<10 {
		t.Fatalf("the whole event: truncated %v", r.At("truncated"))
	}
	e.do("GET", path+"/30").Want(t, http.StatusNotFound, "has 30 events")

	// An ESK with a slash, escaped in the path.
	e.write("a/b", []byte(`"slash"`))
	e.do("GET", "/api/log/esks/a%2Fb/events").Want(t, http.StatusOK, `"esk":"a/b"`, `"json":"slash"`)

	// Bad input names what is wrong.
	for p, want := range map[string]string{
		path + "?from=5&seq=3":               "give one",
		path + "?from=-1":                    `from \"-1\": want a whole number`,
		path + "?seq=x":                      `seq \"x\": want a whole number`,
		path + "?limit=501":                  "limit",
		path + "/x":                          `index \"x\": want a whole number`,
		"/api/log/esks/a..b/events":          "token 2 is empty",
		"/api/log/esks/shop.%3E/events":      "wildcard",
		"/api/log/esks/shop.%3E/live":        "wildcard",
		"/api/log/esks/shop.eu/live?after=z": `after \"z\": want a whole number`,
	} {
		e.do("GET", p).Want(t, http.StatusBadRequest, want)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		e.do(m, path).Want(t, http.StatusMethodNotAllowed)
	}
}

// TestLive: the live stream delivers the ESK's events written after a
// position (by default its last event), and goes on after the event a
// reconnecting browser names.
func TestLive(t *testing.T) {
	e := newEnv(t, envConfig{opts: loghttp.Options{Heartbeat: 20 * time.Millisecond}})
	p0 := e.write("live.x", []byte(`{"n":0}`))
	p1 := e.write("live.x", []byte(`{"n":1}`))
	const path = "/api/log/esks/live.x/live"
	now := apitest.Subscribe(t, e.url, path)
	if ev := apitest.Next(t, now); ev.Name != "ready" || ev.Data != fmt.Sprintf(`{"esk":"live.x","after":%d}`, p1.Seq) {
		t.Fatalf("first event %+v", ev)
	}
	e.write("live.other", []byte(`{}`))
	p2 := e.write("live.x", []byte(`{"n":2}`))
	p3 := e.write("live.x", []byte(`{"n":3}`), transport.WithHLC())
	for _, want := range []transport.Position{p2, p3} {
		ev := apitest.Next(t, now)
		if ev.Name != "event" || ev.ID != fmt.Sprint(want.Seq) || !strings.Contains(ev.Data, fmt.Sprintf(`{"index":%d,"seq":%d,`, want.Index, want.Seq)) ||
			!strings.Contains(ev.Data, fmt.Sprintf(`"json":{"n":%d}`, want.Index)) {
			t.Fatalf("event %+v, want %+v", ev, want)
		}
	}
	for _, tc := range []struct {
		query, lastID string
		want          []transport.Position
	}{
		{"?after=0", "", []transport.Position{p0, p1, p2, p3}},
		{"", fmt.Sprint(p1.Seq), []transport.Position{p2, p3}},
		{"?after=0", fmt.Sprint(p2.Seq), []transport.Position{p3}},
	} {
		var hdr []string
		if tc.lastID != "" {
			hdr = append(hdr, "Last-Event-ID: "+tc.lastID)
		}
		evs := apitest.Subscribe(t, e.url, path+tc.query, hdr...)
		if ev := apitest.Next(t, evs); ev.Name != "ready" {
			t.Fatalf("%+v: first event %+v", tc, ev)
		}
		for _, want := range tc.want {
			if ev := apitest.Next(t, evs); ev.Name != "event" || ev.ID != fmt.Sprint(want.Seq) || !strings.Contains(ev.Data, fmt.Sprintf(`"index":%d,`, want.Index)) {
				t.Fatalf("%+v: event %+v, want %+v", tc, ev, want)
			}
		}
	}
	e.do("GET", path, "Last-Event-ID: nope").Want(t, http.StatusBadRequest, "Last-Event-ID")
}

func TestNewRefuses(t *testing.T) {
	if _, err := loghttp.New(nil, loghttp.Options{}); !errors.Is(err, loghttp.ErrInvalidOption) {
		t.Fatalf("New(nil): %v", err)
	}
	e := newEnv(t, envConfig{})
	if _, err := loghttp.New(e.log, loghttp.Options{Timeout: -1, Heartbeat: -1}); !errors.Is(err, loghttp.ErrInvalidOption) ||
		!strings.Contains(err.Error(), "Timeout") || !strings.Contains(err.Error(), "Heartbeat") {
		t.Fatalf("New with negative options: %v", err)
	}
}
