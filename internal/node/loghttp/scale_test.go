package loghttp_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/apitest"
	"github.com/detbus/detbus/internal/node/loghttp"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// The wide log the scale test and the benchmark share, built once per
// test binary and removed at exit: 1,000,000 events on one ESK
// (scale.big) and one event on each of 200,000 others (wide.0 to
// wide.199999), one of those after every five of the first.
const (
	wideESKs = 200_000
	bigCount = 1_000_000
	bigESK   = "scale.big"
)

var wide struct {
	once   sync.Once
	server *transport.Server
	dir    string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if wide.server != nil {
		wide.server.Shutdown()
		os.RemoveAll(wide.dir)
	}
	os.Exit(code)
}

func wideLog(tb testing.TB) *transport.Server {
	tb.Helper()
	if testnats.Race {
		tb.Skip("builds a log of 1,200,000 events: runs without the race detector (the second pass of scripts/test.sh)")
	}
	if testing.Short() {
		tb.Skip("builds a log of 1,200,000 events")
	}
	wide.once.Do(func() {
		if wide.dir, wide.err = os.MkdirTemp("", "detbus-wide-"); wide.err != nil {
			return
		}
		start := time.Now()
		wide.server, wide.err = transport.StartServer(transport.ServerConfig{Name: "wide", Host: "127.0.0.1", Port: -1, StoreDir: wide.dir})
		if wide.err != nil {
			return
		}
		// Opening a log provisions its stream.
		l, err := transport.Connect(context.Background(), wide.server.ClientURL(), transport.Config{})
		if wide.err = err; err != nil {
			return
		}
		l.Close()
		payload := []byte(`{"side":"buy","qty":1,"price":100,"account":"a-0001","note":"an order of the scale test"}`)
		wide.err = testnats.Publish(context.Background(), wide.server.ClientURL(), bigCount+wideESKs, func(i int) (string, []byte) {
			if i%6 == 5 {
				return "events.wide." + strconv.Itoa(i/6), payload
			}
			return "events." + bigESK, payload
		})
		fmt.Fprintf(os.Stderr, "wide log: %d events, %d on %s, %d ESKs of one event, built in %v\n",
			bigCount+wideESKs, bigCount, bigESK, wideESKs, time.Since(start).Round(time.Millisecond))
	})
	if wide.err != nil {
		tb.Fatalf("wide log: %v", wide.err)
	}
	return wide.server
}

// freshPage serves the log page's API on a log of its own, as a node that
// just started serves it: no ESK names or index facts known yet.
func freshPage(tb testing.TB, s *transport.Server) (string, *transport.Log) {
	tb.Helper()
	l, err := transport.Connect(context.Background(), s.ClientURL(), transport.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	h, err := loghttp.New(l, loghttp.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return apitest.Serve(tb, h), l
}

// get asks url+path and fails unless it answers 200.
func get(tb testing.TB, url, path string) (apitest.Reply, time.Duration) {
	tb.Helper()
	start := time.Now()
	r := apitest.Do(tb, url, "GET", path, "")
	d := time.Since(start)
	if r.Status != http.StatusOK {
		tb.Fatalf("GET %s: %d %.300s", path, r.Status, r.Raw)
	}
	return r, d
}

// TestScaleLogPage: among 200,000 ESKs and beside an ESK of 1,000,000
// events, the log page's list of ESKs (first page, a page by prefix) and
// an ESK opened at its tail are right, and read a bounded number of
// messages: no listing or walk grows with the log. The times are logged
// (the figures of the README come from BenchmarkLogPage).
func TestScaleLogPage(t *testing.T) {
	s := wideLog(t)
	url, l := freshPage(t, s)

	r, cold := get(t, url, "/api/log/esks?limit=100")
	items := r.List("esks")
	if len(items) != 100 || r.Num("total") != wideESKs+1 || r.At("more") != true || r.Num("log.events") != bigCount+wideESKs {
		t.Fatalf("first page: %d ESKs, total %v, more %v, log %v", len(items), r.At("total"), r.At("more"), r.At("log"))
	}
	if items[0]["esk"] != bigESK || items[1]["esk"] != "wide.0" || items[2]["esk"] != "wide.1" || items[3]["esk"] != "wide.10" ||
		items[0]["count"] != float64(bigCount) || items[1]["count"] != float64(1) || items[1]["last_seq"] != float64(6) || items[1]["last_time"] == nil {
		t.Fatalf("first page starts %v %v %v %v", items[0], items[1], items[2], items[3])
	}
	_, warm := get(t, url, "/api/log/esks?limit=100")
	r, prefix := get(t, url, "/api/log/esks?limit=100&prefix=wide.10000")
	if got := fmt.Sprint(field(r.List("esks"), "esk")); r.Num("total") != 11 || got != "[wide.10000 wide.100000 wide.100001 wide.100002 wide.100003 wide.100004 wide.100005 wide.100006 wide.100007 wide.100008 wide.100009]" {
		t.Fatalf("prefix page: total %v, %s", r.At("total"), got)
	}
	r, next := get(t, url, "/api/log/esks?limit=100&prefix=wide.&after=wide.5")
	if got := field(r.List("esks"), "esk"); r.Num("total") != wideESKs || fmt.Sprint(got[:5]) != "[wide.50 wide.500 wide.5000 wide.50000 wide.50001]" {
		t.Fatalf("page after wide.5: total %v, %v", r.At("total"), got[:5])
	}
	listed := l.ReadStats()
	t.Logf("list of %d ESKs: first page %v (reading every name), again %v, by prefix %v, by prefix after a name %v; %d direct gets, %d messages read",
		wideESKs+1, cold, warm, prefix, next, listed.DirectGets, listed.DirectMsgs)
	if listed.DirectMsgs > 4*100+11 {
		t.Fatalf("the four pages read %d messages", listed.DirectMsgs)
	}

	url, l = freshPage(t, s)
	r, tail := get(t, url, "/api/log/esks/"+bigESK+"/events?limit=50")
	evs := r.List("events")
	if r.Num("count") != bigCount || r.Num("from") != bigCount-50 || len(evs) != 50 || evs[49]["index"] != float64(bigCount-1) ||
		evs[49]["seq"] != float64(bigCount+wideESKs-1) || evs[0]["format"] != "json" {
		t.Fatalf("tail page: count %v from %v, %d events, last %v", r.At("count"), r.At("from"), len(evs), evs[len(evs)-1]["index"])
	}
	opened := l.ReadStats()
	r, middle := get(t, url, "/api/log/esks/"+bigESK+"/events?limit=50&from=500000")
	if r.Num("from") != 500000 || r.List("events")[0]["seq"] != float64(600001) {
		t.Fatalf("middle page: from %v, first %v", r.At("from"), r.List("events")[0])
	}
	r, seek := get(t, url, "/api/log/esks/"+bigESK+"/events?limit=50&seq=900000")
	if r.Num("from") != 750000 {
		t.Fatalf("page at position 900000: from %v", r.At("from"))
	}
	t.Logf("an ESK of %d events: opened at its tail in %v (%d direct gets, %d messages read), a page from its middle in %v, from a stream position in %v",
		bigCount, tail, opened.DirectGets, opened.DirectMsgs, middle, seek)
	if opened.DirectMsgs > 50+2*1000+64 {
		t.Fatalf("opening the tail read %d messages: it walked", opened.DirectMsgs)
	}
}

// BenchmarkLogPage measures the log page's reads among 200,000 ESKs and
// on an ESK of 1,000,000 events, each beside the raw JetStream request
// closest to it, on the same node in the same run:
//
//	go test -run '^$' -bench LogPage -benchtime 20x ./internal/node/loghttp/
func BenchmarkLogPage(b *testing.B) {
	s := wideLog(b)
	nc := testnats.Conn(b, s.ClientURL())
	raw := func(b *testing.B, subject, body string) {
		for b.Loop() {
			m, err := nc.Request(subject, []byte(body), 10*time.Second)
			if err != nil || len(m.Data) == 0 && m.Header.Get("Nats-Sequence") == "" {
				b.Fatalf("%s: %v", subject, err)
			}
		}
	}
	b.Run("raw=stream-info", func(b *testing.B) { raw(b, "$JS.API.STREAM.INFO."+transport.DefaultStream, "") })
	b.Run("raw=stream-info-all-subjects", func(b *testing.B) {
		raw(b, "$JS.API.STREAM.INFO."+transport.DefaultStream, `{"subjects_filter":"events.>"}`)
	})
	b.Run("raw=direct-get-last", func(b *testing.B) {
		raw(b, "$JS.API.DIRECT.GET."+transport.DefaultStream+".events."+bigESK, "")
	})
	page := func(b *testing.B, path string, fresh bool) {
		url, _ := freshPage(b, s)
		get(b, url, path)
		for b.Loop() {
			if fresh {
				b.StopTimer()
				url, _ = freshPage(b, s)
				b.StartTimer()
			}
			get(b, url, path)
		}
	}
	b.Run("esks=first-page-fresh-node", func(b *testing.B) { page(b, "/api/log/esks?limit=100", true) })
	b.Run("esks=first-page", func(b *testing.B) { page(b, "/api/log/esks?limit=100", false) })
	b.Run("esks=prefix-page", func(b *testing.B) { page(b, "/api/log/esks?limit=100&prefix=wide.10000", false) })
	b.Run("events=tail-of-1M-fresh-node", func(b *testing.B) { page(b, "/api/log/esks/"+bigESK+"/events?limit=50", true) })
	b.Run("events=middle-of-1M-fresh-node", func(b *testing.B) {
		page(b, "/api/log/esks/"+bigESK+"/events?limit=50&from=500000", true)
	})
}
