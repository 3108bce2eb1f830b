package transport_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/detbus/detbus/transport"
)

// TestSourceCannotForgeCheckpoints: a source whose sources cover every
// ESK may not write the chain's checkpoints, by the SDK, a raw JetStream
// publish or the request service; what it writes under a look-alike ESK
// is not taken for a checkpoint; and it may not run the checkpointer.
func TestSourceCannotForgeCheckpoints(t *testing.T) {
	auth := transport.AuthConfig{Users: []transport.User{{Name: "all", Password: "pw", Sources: []string{">"}}}}
	srv, admin := secureNode(t, auth, nil)
	svc, err := transport.NewService(admin, transport.WithAuthorizer(auth.Authorizer()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	ctx := context.Background()
	writeN(t, admin, "orders.1", 5)
	genuine := checkpointNow(t, admin)
	all := connectAs(t, srv.ClientURL(), transport.UserOptions("all", "pw")...)
	forged, _ := json.Marshal(transport.Checkpoint{Stream: "EVENTS", Seq: genuine.Seq, Hash: transport.Hash{1}, By: "all"})

	if _, err := all.Write(ctx, transport.ChainESK, forged); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a source's write of a checkpoint: %v", err)
	}
	raw, viol := violations(t, srv.ClientURL(), transport.UserOptions("all", "pw")...)
	js, err := jetstream.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, "events."+transport.ChainESK, forged); err == nil {
		t.Fatal("a source's raw publish of a checkpoint was acknowledged")
	}
	expectViolation(t, viol, "a raw publish of a checkpoint", "events."+transport.ChainESK)
	body, _ := json.Marshal(map[string]any{"esk": transport.ChainESK, "event": json.RawMessage(forged)})
	if _, err := raw.Request(transport.SubjectAppend, body, time.Second); err == nil {
		t.Fatal("the request service answered a source's append of a checkpoint")
	}
	expectViolation(t, viol, "a checkpoint through the request service", transport.SubjectAppend)
	if err := auth.Authorizer()(transport.InboxPrefix("all")+".x", transport.ChainESK); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("the service's authorizer lets a source write the checkpoints: %v", err)
	}
	writeN(t, admin, "orders.1", 1) // a checkpoint is due
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := all.RunCheckpoints(rctx, transport.CheckpointConfig{Every: 1}); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("a source ran the checkpointer: %v", err)
	}

	// A look-alike ESK is the source's own, and no checkpoint.
	if _, err := all.Write(ctx, "x."+transport.ChainESK, forged); err != nil {
		t.Fatal(err)
	}
	if n, err := admin.Count(ctx, transport.ChainESK); err != nil || n != 1 {
		t.Fatalf("the checkpoint ESK holds %d events (%v)", n, err)
	}
	rep, err := all.VerifyChain(ctx, transport.VerifyOptions{})
	if err != nil || rep.Checkpoints != 1 || rep.Confirmed != 1 || rep.Events != rep.To {
		t.Fatalf("a source verifying: %+v, %v", rep, err)
	}
}
