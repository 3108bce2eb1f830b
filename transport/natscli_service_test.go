package transport_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestNatsCLIService drives the request service with the real nats CLI:
// `nats req` appends conditionally, `nats micro info` describes the
// service, and a bad request comes back with a clear error.
func TestNatsCLIService(t *testing.T) {
	cli := testnats.NatsCLI(t)
	s, l := startService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nats := func(args ...string) string {
		t.Helper()
		out, err := testnats.NatsCommand(t, ctx, cli, s.ClientURL(), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("nats %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	reply := func(out string) transport.ServiceReply {
		t.Helper()
		var rep transport.ServiceReply
		line := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
		if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &rep); err != nil {
			t.Fatalf("reply %q: %v", out, err)
		}
		return rep
	}
	rep := reply(nats("req", "--raw", transport.SubjectExistsOrWrite, `{"esk":"cli.svc","index":0,"event":{"qty":1}}`))
	if rep.Outcome != "written" || rep.Index == nil || *rep.Index != 0 || rep.Seq == 0 {
		t.Fatalf("nats req exists_or_write: %+v", rep)
	}
	rep = reply(nats("req", "--raw", transport.SubjectExistsOrWrite, `{"esk":"cli.svc","index":0,"event":{"qty":2}}`))
	if rep.Outcome != "present" || rep.Equal == nil || *rep.Equal {
		t.Fatalf("nats req at a taken index: %+v", rep)
	}
	out := nats("req", transport.SubjectExistsOrWrite, `{"esk":"cli.svc","index":5,"event":{}}`)
	if !strings.Contains(out, "409") || !strings.Contains(out, "ahead") {
		t.Fatalf("nats req ahead: %s", out)
	}
	info := nats("micro", "info", transport.ServiceName)
	for _, want := range []string{transport.ServiceName, transport.SubjectAppend, transport.SubjectExistsOrWrite, transport.SubjectGet} {
		if !strings.Contains(info, want) {
			t.Errorf("nats micro info lacks %q:\n%s", want, info)
		}
	}
	if n, err := l.Count(ctx, "cli.svc"); err != nil || n != 1 {
		t.Fatalf("count %d, %v", n, err)
	}
}
