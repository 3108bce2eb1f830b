package transport_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// startService starts a node, opens a log and registers its request
// service, all stopped at cleanup.
func startService(t *testing.T) (*transport.Server, *transport.Log) {
	t.Helper()
	s := testnats.Node(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{})
	svc, err := transport.NewService(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return s, l
}

func TestServiceRequestReply(t *testing.T) {
	s, _ := startService(t)
	nc := testnats.Conn(t, s.ClientURL())
	req := func(subject, body string) (transport.ServiceReply, string, string) {
		t.Helper()
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s %s: %v", subject, body, err)
		}
		var rep transport.ServiceReply
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
			var se transport.ServiceError
			if err := json.Unmarshal(m.Data, &se); err != nil || se.Code != code || se.Error == "" {
				t.Fatalf("error reply body %q: %v", m.Data, err)
			}
			return rep, code, m.Header.Get("Nats-Service-Error")
		}
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatalf("reply %q: %v", m.Data, err)
		}
		return rep, "", ""
	}
	rep, code, _ := req(transport.SubjectAppend, `{"esk":"svc.a","event":{"x":1}}`)
	if code != "" || rep.Index == nil || *rep.Index != 0 || rep.Outcome != "written" || rep.Seq == 0 {
		t.Fatalf("append: %+v %s", rep, code)
	}
	rep, code, _ = req(transport.SubjectExistsOrWrite, `{"esk":"svc.a","index":1,"event":{"x":2}}`)
	if code != "" || rep.Index == nil || *rep.Index != 1 || rep.Outcome != "written" || rep.Equal == nil || !*rep.Equal {
		t.Fatalf("exists_or_write new: %+v %s", rep, code)
	}
	rep, code, _ = req(transport.SubjectExistsOrWrite, `{"esk":"svc.a","index":1,"event":{"x":3}}`)
	if code != "" || rep.Outcome != "present" || rep.Equal == nil || *rep.Equal {
		t.Fatalf("exists_or_write present: %+v %s", rep, code)
	}
	rep, code, _ = req(transport.SubjectGet, `{"esk":"svc.a","index":1}`)
	if code != "" || string(rep.Event) != `{"x":2}` {
		t.Fatalf("get: %+v %s", rep, code)
	}
	rep, code, _ = req(transport.SubjectCount, `{"esk":"svc.a"}`)
	if code != "" || rep.Count == nil || *rep.Count != 2 || rep.Index != nil {
		t.Fatalf("count: %+v %s", rep, code)
	}
	// The index is in the replies about an event, 0 included, and not in
	// a count's.
	for _, c := range []struct{ subject, body, want string }{
		{transport.SubjectGet, `{"esk":"svc.a","index":0}`, `{"esk":"svc.a","index":0,"seq":`},
		{transport.SubjectExistsOrWrite, `{"esk":"svc.b","index":0,"event":{}}`, `{"esk":"svc.b","index":0,"seq":`},
		{transport.SubjectAppend, `{"esk":"svc.c","event":{}}`, `{"esk":"svc.c","index":0,"seq":`},
		{transport.SubjectCount, `{"esk":"svc.a"}`, `{"esk":"svc.a","count":2}`},
		{transport.SubjectCount, `{"esk":"svc.none"}`, `{"esk":"svc.none","count":0}`},
	} {
		m, err := nc.Request(c.subject, []byte(c.body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(m.Data), c.want) {
			t.Errorf("%s %s: %s, want it to start %s", c.subject, c.body, m.Data, c.want)
		}
	}
	for _, c := range []struct{ subject, body, code string }{
		{transport.SubjectExistsOrWrite, `{"esk":"svc.a","index":9,"event":{}}`, "409"},
		{transport.SubjectExistsOrWrite, `{"esk":"svc.a","event":{}}`, "400"},
		{transport.SubjectAppend, `{"esk":"svc..a","event":{}}`, "400"},
		{transport.SubjectAppend, `{"esk":"svc.a"}`, "400"},
		{transport.SubjectAppend, `not json`, "400"},
		{transport.SubjectAppend, `{"esk":"svc.a","event":{},"extra":1}`, "400"},
		{transport.SubjectGet, `{"esk":"svc.a","index":7}`, "404"},
	} {
		if _, code, text := req(c.subject, c.body); code != c.code || text == "" {
			t.Errorf("%s %s: code %q (%s), want %s", c.subject, c.body, code, text, c.code)
		}
	}
	if n, _ := testnats.Log(t, s.ClientURL(), transport.Config{}).Count(ctxT(t), "svc.a"); n != 2 {
		t.Fatalf("bad requests changed the log: count %d", n)
	}
}
