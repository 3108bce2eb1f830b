package transform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// TestForgedSnapshotsAreNotRestored: a user who may write the snapshot
// bucket but not the bank's checkpoints forges snapshots, one at a new
// position and one over the newest real one, both with a matching hash,
// giving mallory a fortune. A new instance restores neither: it takes the
// newest snapshot the log confirms, refuses mallory's transfer, and
// decides every command as a run from the start does.
func TestForgedSnapshotsAreNotRestored(t *testing.T) {
	auth := transport.AuthConfig{Users: []transport.User{
		{Name: "bank-worker", Password: "w-pw", Sources: []string{"bank.decisions", "bank.decisions.>"}, Buckets: []string{"detbus-snapshots"}},
		{Name: "bank-client", Password: "c-pw", Sources: []string{"bank.commands.>"}},
		{Name: "forger", Password: "f-pw", Role: transport.RoleReader, Buckets: []string{"detbus-snapshots"}},
	}}
	cfg := transport.DefaultServerConfig(t.TempDir())
	cfg.Port, cfg.HTTPPort, cfg.Auth = -1, 0, auth
	srv, err := transport.StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	url := srv.ClientURL()
	as := func(user, pw string) *transport.Log {
		l, err := transport.Connect(ctx, url, transport.Config{}, transport.UserOptions(user, pw)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	admin := testnats.Log(t, url, transport.Config{}, srv.ClientOptions()...)
	if _, err := admin.Bucket(ctx, transport.BucketConfig{Name: transform.DefaultSnapshotBucket}); err != nil {
		t.Fatal(err)
	}
	client := as("bank-client", "c-pw")
	command := func(c bank.Command) {
		t.Helper()
		data, _ := json.Marshal(c)
		if _, err := client.Write(ctx, "bank.commands."+c.Account+c.From, data); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		command(bank.Command{Op: bank.OpDeposit, ID: fmt.Sprint("d", i), Account: "alice", Amount: 10})
	}
	command(bank.Command{Op: bank.OpDeposit, ID: "m0", Account: "mallory", Amount: 1})

	// A worker with the bank's rights folds them, snapshotting every 7
	// inputs and claiming each snapshot in the log.
	worker := as("bank-worker", "w-pw")
	store, err := transform.OpenSnapshotStore(ctx, worker, "")
	if err != nil {
		t.Fatal(err)
	}
	spec := bank.Spec()
	first := startWith(t, transform.Config{Spec: spec, Log: worker, Instance: "w1", Snapshots: store, SnapshotEvery: 7})
	waitOutputs(t, admin, "bank.decisions", 21)
	first.halt(t)
	// The newest confirmed snapshot once the worker has stopped: it may
	// have saved one after its last output.
	real, ok, err := store.Latest(ctx, spec)
	if err != nil || !ok {
		t.Fatalf("no confirmed snapshot: %v %v", ok, err)
	}

	// The forger writes two snapshots with matching hashes.
	fstore, err := transform.OpenSnapshotStore(ctx, as("forger", "f-pw"), "")
	if err != nil {
		t.Fatal(err)
	}
	rich := bank.New()
	richState := []byte(`{"accounts":[{"name":"alice","balance":200},{"name":"mallory","balance":1000000}],"seen":[]}`)
	if err := rich.Restore(richState); err != nil {
		t.Fatal(err)
	}
	forged := transform.NewSnapshot(spec, real.InputSeq+1, real.Outputs+1, real.Rejections, richState)
	if _, _, err := fstore.Save(ctx, forged, "w1"); err == nil {
		t.Fatal("the forger claimed a snapshot in the bank's namespace")
	}
	bucket, err := as("forger", "f-pw").Bucket(ctx, transport.BucketConfig{Name: transform.DefaultSnapshotBucket})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := bucket.Keys(ctx, "")
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v %v", keys, err)
	}
	body, _ := json.Marshal(forged)
	if _, err := bucket.Put(ctx, fmt.Sprintf("%s.bank.%020d", transport.DefaultStream, forged.InputSeq), body); err != nil {
		t.Fatalf("the forger writes the bucket: %v", err)
	}
	over := transform.NewSnapshot(spec, real.InputSeq, real.Outputs, real.Rejections, richState)
	body, _ = json.Marshal(over)
	if _, err := bucket.Put(ctx, fmt.Sprintf("%s.bank.%020d", transport.DefaultStream, real.InputSeq), body); err != nil {
		t.Fatalf("the forger overwrites a snapshot: %v", err)
	}

	// Mallory now asks to move 999,999.
	command(bank.Command{Op: bank.OpTransfer, ID: "steal", From: "mallory", To: "alice", Amount: 999999})
	second := startWith(t, transform.Config{Spec: spec, Log: worker, Instance: "w2", Snapshots: store, SnapshotEvery: 7})
	waitOutputs(t, admin, "bank.decisions", 22)
	testnats.WaitFor(t, 10*time.Second, "the second instance to apply the transfer", func() error {
		if st := second.r.Status(); st.Inputs == 0 {
			return fmt.Errorf("no input yet")
		}
		return nil
	})
	ev, err := admin.Get(ctx, "bank.decisions", 21)
	if err != nil {
		t.Fatal(err)
	}
	var d bank.Decision
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.ID != "steal" || d.Decision != bank.Rejected {
		t.Fatalf("mallory's transfer: %s (%v)", ev.Data, err)
	}
	// It restored a snapshot the log confirms, older than both forgeries.
	if st := second.r.Status(); st.Inputs < 2 || st.Divergences != nil {
		t.Fatalf("the second instance: %+v", st)
	}
}
