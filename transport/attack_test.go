package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// attackNode is a node with a source on orders.>, a reader with the
// status bucket, a worker with the snapshot and status buckets, and an
// admin, as a deployment would have them; the buckets are provisioned and
// the request service runs with the users' authorizer, as detbus serve
// does.
func attackNode(t *testing.T) (*transport.Server, *transport.Log, transport.AuthConfig) {
	t.Helper()
	auth := transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "o-pw", Sources: []string{"orders.>"}},
		{Name: "audit", Password: "a-pw", Role: transport.RoleReader, Buckets: []string{"detbus-status"}},
		{Name: "bank-worker", Password: "w-pw", Sources: []string{"bank.decisions", "bank.decisions.>"}, Buckets: []string{"detbus-snapshots", "detbus-status"}},
		{Name: "ops", Password: "ops-pw", Role: transport.RoleAdmin},
	}}
	srv, admin := secureNode(t, auth, nil)
	ctx := context.Background()
	for _, b := range []string{"detbus-snapshots", "detbus-status"} {
		if _, err := admin.Bucket(ctx, transport.BucketConfig{Name: b}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := transport.NewService(admin, transport.WithAuthorizer(auth.Authorizer()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return srv, admin, auth
}

// violations collects the permission violations the server reports to a
// connection.
func violations(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, <-chan string) {
	t.Helper()
	ch := make(chan string, 64)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case ch <- err.Error():
			default:
			}
		}
	}))
	return connectRaw(t, url, opts...), ch
}

func expectViolation(t *testing.T, ch <-chan string, what, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case v := <-ch:
			if strings.Contains(v, subject) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: the server did not refuse %s", what, subject)
		}
	}
}

// apiRequest sends a JetStream API request and returns its reply, or nil
// when none came (the server drops a refused request).
func apiRequest(nc *nats.Conn, subject string, body any) *nats.Msg {
	data, _ := json.Marshal(body)
	m, err := nc.Request(subject, data, time.Second)
	if err != nil {
		return nil
	}
	return m
}

// TestNoConsumerDeliversIntoTheLog: a user's consumer would deliver to any
// subject its creator names, past every permission: onto the node's append
// endpoint, or straight into the log's subjects. No non-admin may create a
// consumer, on the log's stream or a bucket's; and the append endpoint
// refuses what a consumer delivers even when an admin makes one.
func TestNoConsumerDeliversIntoTheLog(t *testing.T) {
	srv, admin, _ := attackNode(t)
	ctx := context.Background()
	url := srv.ClientURL()

	// The source stores a forged request under its own ESK...
	orders, ordersViol := violations(t, url, transport.UserOptions("orders-svc", "o-pw")...)
	js, err := jetstream.New(orders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "events.orders.evil", []byte(`{"esk":"kv.users","event":{"op":"set","key":"root","value":"mallory"}}`)); err != nil {
		t.Fatal(err)
	}
	// ...and asks for a push consumer that delivers it to detbus.append,
	// and one that delivers it into the log as an event of kv.users.
	for _, target := range []string{transport.SubjectAppend, "events.kv.users"} {
		cfg := map[string]any{"stream_name": "EVENTS", "config": map[string]any{
			"name": "evil" + fmt.Sprint(len(target)), "deliver_subject": target, "deliver_group": "q",
			"filter_subject": "events.orders.evil", "ack_policy": "none", "deliver_policy": "all"}}
		if m := apiRequest(orders, "$JS.API.CONSUMER.CREATE.EVENTS.evil"+fmt.Sprint(len(target))+".events.orders.evil", cfg); m != nil {
			t.Fatalf("the source created a consumer delivering to %s: %s", target, m.Data)
		}
		expectViolation(t, ordersViol, "a source's consumer", "$JS.API.CONSUMER.CREATE.EVENTS")
	}
	// The reader, through its own bucket's stream.
	audit, auditViol := violations(t, url, transport.UserOptions("audit", "a-pw")...)
	cfg := map[string]any{"stream_name": "KV_detbus-status", "config": map[string]any{
		"name": "evil", "deliver_subject": "events.bank.decisions", "ack_policy": "none", "deliver_policy": "all"}}
	if m := apiRequest(audit, "$JS.API.CONSUMER.CREATE.KV_detbus-status.evil", cfg); m != nil {
		t.Fatalf("the reader created a consumer on its bucket: %s", m.Data)
	}
	expectViolation(t, auditViol, "a reader's consumer on its bucket", "$JS.API.CONSUMER.CREATE.KV_detbus-status")

	// Even an admin's push consumer delivering to the append endpoint does
	// not make the node write: a delivery comes from no user's inbox.
	raw := testnats.Conn(t, url, srv.ClientOptions()...)
	req, _ := json.Marshal(jetstream.ConsumerConfig{Name: "push-to-append2", DeliverSubject: transport.SubjectAppend,
		DeliverGroup: "q", FilterSubject: "events.orders.evil", AckPolicy: jetstream.AckNonePolicy})
	body := fmt.Sprintf(`{"stream_name":"EVENTS","config":%s}`, req)
	if m, err := raw.Request("$JS.API.CONSUMER.CREATE.EVENTS.push-to-append2.events.orders.evil", []byte(body), 5*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("admin push consumer: %v %s", err, m.Data)
	}
	// Give the delivery a chance to arrive, then check nothing was written:
	// a write the service took would be on kv.users.
	if _, err := admin.Write(ctx, "orders.fence", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	testnats.WaitFor(t, 5*time.Second, "the delivery", func() error {
		m, err := raw.Request("$JS.API.CONSUMER.INFO.EVENTS.push-to-append2", nil, time.Second)
		if err != nil {
			return err
		}
		var info struct {
			Delivered struct {
				Consumer uint64 `json:"consumer_seq"`
			} `json:"delivered"`
		}
		if err := json.Unmarshal(m.Data, &info); err != nil || info.Delivered.Consumer == 0 {
			return fmt.Errorf("not delivered yet: %v %s", err, m.Data)
		}
		return nil
	})
	for _, esk := range []string{"kv.users", "bank.decisions"} {
		if n, err := admin.Count(ctx, esk); err != nil || n != 0 {
			t.Fatalf("%s holds %d events (%v): a delivery made the node write", esk, n, err)
		}
	}
}

// TestEachUserHasItsOwnInboxes: no user may subscribe to every inbox or to
// another user's; a request's reply reaches only its asker.
func TestEachUserHasItsOwnInboxes(t *testing.T) {
	srv, _, _ := attackNode(t)
	url := srv.ClientURL()
	spy, viol := violations(t, url, transport.UserOptions("orders-svc", "o-pw")...)
	for _, subject := range []string{"_INBOX.>", transport.InboxPrefix("ops") + ".>", transport.InboxPrefix("audit") + ".>", "$JS.>"} {
		sub, err := spy.SubscribeSync(subject)
		if err != nil {
			t.Fatal(err)
		}
		expectViolation(t, viol, "subscribe "+subject, subject)
		// A request by the admin and one by the reader: the spy sees neither.
		ops := testnats.Conn(t, url, transport.UserOptions("ops", "ops-pw")...)
		if _, err := ops.Request(transport.SubjectCount, []byte(`{"esk":"orders.x"}`), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("the source read a reply on %s: %s", m.Subject, m.Data)
		}
	}
	// Its own inboxes work: a request of its own is answered.
	if _, err := spy.Request(transport.SubjectCount, []byte(`{"esk":"orders.x"}`), 5*time.Second); err != nil {
		t.Fatalf("a request in the source's own inbox: %v", err)
	}
}

// TestBucketGrantIsUseNotConfiguration: a bucket grant lets a user read
// and write the bucket, never change its stream; the admin's requests
// stay the service's to answer.
func TestBucketGrantIsUseNotConfiguration(t *testing.T) {
	srv, admin, _ := attackNode(t)
	ctx := context.Background()
	url := srv.ClientURL()
	audit, viol := violations(t, url, transport.UserOptions("audit", "a-pw")...)
	js, err := jetstream.New(audit)
	if err != nil {
		t.Fatal(err)
	}
	st, err := admin.JetStream().Stream(ctx, "KV_detbus-status")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = append(cfg.Subjects, transport.SubjectAppend, transport.SubjectExistsOrWrite)
	uctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.UpdateStream(uctx, cfg); err == nil {
		t.Fatal("the reader updated its bucket's stream")
	}
	expectViolation(t, viol, "update the bucket's stream", "$JS.API.STREAM.UPDATE.KV_detbus-status")
	cctx, cancel2 := context.WithTimeout(ctx, time.Second)
	defer cancel2()
	if _, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: "KV_detbus-other", Subjects: []string{"detbus.>"}}); err == nil {
		t.Fatal("the reader created a stream")
	}
	expectViolation(t, viol, "create a stream", "$JS.API.STREAM.CREATE")
	info, err := st.Info(ctx)
	if err != nil || len(info.Config.Subjects) != 1 {
		t.Fatalf("the bucket's stream has subjects %v (%v)", info.Config.Subjects, err)
	}
	// The admin's conditional append is the service's, answered 409 where
	// due, and not stored by any stream but the log.
	ops := testnats.Conn(t, url, transport.UserOptions("ops", "ops-pw")...)
	m, err := ops.Request(transport.SubjectExistsOrWrite, []byte(`{"esk":"orders.a","index":5,"event":{}}`), 5*time.Second)
	if err != nil || m.Header.Get("Nats-Service-Error-Code") != "409" {
		t.Fatalf("exists_or_write ahead of the count: %v %v %s", err, m.Header, m.Data)
	}
	// The grant is still use: keys and values.
	b, err := connectAs(t, url, transport.UserOptions("audit", "a-pw")...).Bucket(ctx, transport.BucketConfig{Name: "detbus-status"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "x", []byte("1")); err != nil {
		t.Fatalf("put into the granted bucket: %v", err)
	}
}

// TestOneUserCannotExhaustConsumers: a user who tried to make a thousand
// durable consumers made none, and the admin's reads still get theirs.
func TestOneUserCannotExhaustConsumers(t *testing.T) {
	srv, admin, _ := attackNode(t)
	ctx := context.Background()
	orders, viol := violations(t, srv.ClientURL(), transport.UserOptions("orders-svc", "o-pw")...)
	js, err := jetstream.New(orders)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := js.CreateConsumer(cctx, "EVENTS", jetstream.ConsumerConfig{Durable: fmt.Sprint("d", i)})
		cancel()
		if err == nil {
			t.Fatalf("the source created durable consumer %d", i)
		}
	}
	expectViolation(t, viol, "durable consumers", "$JS.API.CONSUMER.CREATE.EVENTS")
	st, err := admin.JetStream().Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("the stream has %d consumers", n)
	}
	if _, err := admin.Write(ctx, "orders.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for ev, err := range admin.Events(fctx, []string{"orders.>"}, transport.ReadOptions{Follow: true}) {
		if err != nil || ev.ESK != "orders.1" {
			t.Fatalf("the admin follows the log: %+v %v", ev, err)
		}
		break
	}
}

// TestUsersReadAndFollowWithoutConsumers: a source and a reader, who may
// not create consumers, read the log by direct gets and follow it as it
// grows.
func TestUsersReadAndFollowWithoutConsumers(t *testing.T) {
	srv, admin, _ := attackNode(t)
	ctx := context.Background()
	reader := connectAs(t, srv.ClientURL(), transport.UserOptions("audit", "a-pw")...)
	source := connectAs(t, srv.ClientURL(), transport.UserOptions("orders-svc", "o-pw")...)
	if _, err := source.Write(ctx, "orders.1", []byte(`{"n":0}`)); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for i := 1; i < 5; i++ {
			if _, err := source.Write(ctx, "orders.1", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
				t.Error(err)
			}
			if _, err := admin.Write(ctx, "payments.1", []byte(`{}`)); err != nil {
				t.Error(err)
			}
		}
	})
	for ev, err := range reader.Events(fctx, []string{"orders.*"}, transport.ReadOptions{Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.ESK != "orders.1" || ev.Index != uint64(got) {
			t.Fatalf("event %d: %s@%d", got, ev.ESK, ev.Index)
		}
		if got++; got == 5 {
			break
		}
	}
	if st, err := admin.JetStream().Stream(ctx, "EVENTS"); err != nil || st.CachedInfo().State.Consumers != 0 {
		t.Fatalf("the users made consumers: %v", err)
	}
}

// TestReservedESKsAreTheNodes: a source whose sources cover everything
// still may not write under the node's reserved prefix, where the claims
// that confirm the node's snapshots live.
func TestReservedESKsAreTheNodes(t *testing.T) {
	srv, admin := secureNode(t, transport.AuthConfig{Users: []transport.User{
		{Name: "all", Password: "pw", Sources: []string{">"}},
	}}, nil)
	ctx := context.Background()
	all := connectAs(t, srv.ClientURL(), transport.UserOptions("all", "pw")...)
	if _, err := all.Write(ctx, "anything.at.all", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := all.Write(ctx, transport.Reserved+".checkpoints.kv.1", []byte(`{"by":"x","hash":"y"}`)); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a source wrote under the reserved prefix: %v", err)
	}
	if n, err := admin.Count(ctx, transport.Reserved+".checkpoints.kv.1"); err != nil || n != 0 {
		t.Fatalf("the reserved ESK holds %d events (%v)", n, err)
	}
}
