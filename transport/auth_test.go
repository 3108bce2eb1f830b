package transport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/detbus/detbus/transport"
)

// secureNode starts a node with users and, optionally, TLS, and opens the
// log (provisioning the stream) as the node's own admin.
func secureNode(t *testing.T, auth transport.AuthConfig, tlsCfg *transport.TLSConfig) (*transport.Server, *transport.Log) {
	t.Helper()
	cfg := transport.DefaultServerConfig(t.TempDir())
	cfg.Port, cfg.HTTPPort = -1, 0
	cfg.Auth, cfg.TLS = auth, tlsCfg
	srv, err := transport.StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx := context.Background()
	admin, err := transport.Connect(ctx, srv.ClientURL(), transport.Config{}, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return srv, admin
}

// connectAs opens the log as a user; the stream is not provisioned. The
// timeout is long so that only the server's refusal can end a refused
// write quickly as ErrForbidden rather than ErrUnavailable.
func connectAs(t *testing.T, url string, opts ...nats.Option) *transport.Log {
	t.Helper()
	l, err := transport.Connect(context.Background(), url, transport.Config{NoProvision: true, Timeout: time.Minute}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestSourceWritesOnlyItsOwnESKs(t *testing.T) {
	srv, admin := secureNode(t, transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "s3cret", Sources: []string{"orders.>"}},
	}}, nil)
	ctx := context.Background()
	orders := connectAs(t, srv.ClientURL(), transport.UserOptions("orders-svc", "s3cret")...)

	// Its own ESKs: every kind of write.
	if _, err := orders.Write(ctx, "orders.1", []byte(`{"n":1}`)); err != nil {
		t.Fatalf("write to own ESK: %v", err)
	}
	if res, err := orders.ExistsOrWrite(ctx, "orders.1", 1, []byte(`{"n":2}`)); err != nil || res.Outcome != transport.Written {
		t.Fatalf("existsOrWrite to own ESK: %+v, %v", res, err)
	}
	pw, err := orders.WriteAsync(ctx, "orders.2", []byte(`{"n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Result(); err != nil {
		t.Fatalf("async write to own ESK: %v", err)
	}
	// Reading is allowed: the whole log.
	if _, err := admin.Write(ctx, "payments.1", []byte(`{"p":1}`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := orders.Get(ctx, "payments.1", 0); err != nil || string(ev.Data) != `{"p":1}` {
		t.Fatalf("read of another ESK: %+v, %v", ev, err)
	}

	// Another source's ESKs: refused by the server, named, nothing stored.
	before, err := admin.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	checkForbidden := func(what string, err error) {
		t.Helper()
		var fe *transport.ForbiddenError
		if !errors.As(err, &fe) || !errors.Is(err, transport.ErrForbidden) {
			t.Fatalf("%s: got %v, want a ForbiddenError", what, err)
		}
		if fe.ESK != "payments.1" || !strings.Contains(err.Error(), "events.payments.1") {
			t.Fatalf("%s: error %q does not name the ESK and subject", what, err)
		}
	}
	_, err = orders.Write(ctx, "payments.1", []byte(`{"stolen":true}`))
	checkForbidden("write", err)
	_, err = orders.ExistsOrWrite(ctx, "payments.1", 1, []byte(`{"stolen":true}`))
	checkForbidden("existsOrWrite", err)
	pw, err = orders.WriteAsync(ctx, "payments.1", []byte(`{"stolen":true}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pw.Result()
	checkForbidden("async write", err)
	// A raw publish with the nats client, around the SDK.
	nc := connectRaw(t, srv.ClientURL(), transport.UserOptions("orders-svc", "s3cret")...)
	if err := nc.Publish("events.payments.1", []byte(`{"raw":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The request service writes with the node's rights, so a source may
	// not use it to append.
	if _, err := nc.Request(transport.SubjectAppend, []byte(`{"esk":"payments.1","data":{}}`), 200*time.Millisecond); err == nil {
		t.Fatal("a source could send to the append service")
	}
	// One more allowed write after the refused ones shows that the refusals
	// were all processed before it, then nothing of them is stored.
	if _, err := orders.Write(ctx, "orders.3", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	after, err := admin.State(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if after.Messages != before.Messages+1 {
		t.Fatalf("stream went from %d to %d messages, want only the one allowed write", before.Messages, after.Messages)
	}
	if n, err := admin.Count(ctx, "payments.1"); err != nil || n != 1 {
		t.Fatalf("payments.1 has %d events (%v), want 1", n, err)
	}
}

func connectRaw(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestSourceCannotDeleteOrPurge(t *testing.T) {
	srv, admin := secureNode(t, transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "pw", Sources: []string{"orders.>"}},
	}}, nil)
	ctx := context.Background()
	if _, err := admin.Write(ctx, "orders.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	nc := connectRaw(t, srv.ClientURL(), transport.UserOptions("orders-svc", "pw")...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	c, cancel := short()
	err = js.DeleteStream(c, transport.DefaultStream)
	cancel()
	if err == nil {
		t.Fatal("a source deleted the stream")
	}
	s, err := js.Stream(ctx, transport.DefaultStream)
	if err != nil {
		t.Fatalf("a source cannot read stream info: %v", err)
	}
	c, cancel = short()
	err = s.Purge(c)
	cancel()
	if err == nil {
		t.Fatal("a source purged the stream")
	}
	c, cancel = short()
	err = s.DeleteMsg(c, 1)
	cancel()
	if err == nil {
		t.Fatal("a source deleted a message")
	}
	c, cancel = short()
	_, err = js.UpdateStream(c, jetstream.StreamConfig{Name: transport.DefaultStream, Subjects: []string{"events.>"}})
	cancel()
	if err == nil {
		t.Fatal("a source changed the stream")
	}
	if n, err := admin.Count(ctx, "orders.1"); err != nil || n != 1 {
		t.Fatalf("orders.1 has %d events (%v), want 1", n, err)
	}
}

func TestAuthenticationIsRequired(t *testing.T) {
	srv, _ := secureNode(t, transport.AuthConfig{Users: []transport.User{
		{Name: "orders-svc", Password: "right", Sources: []string{"orders.>"}},
	}}, nil)
	for name, opts := range map[string][]nats.Option{
		"no credentials": nil,
		"wrong password": {nats.UserInfo("orders-svc", "wrong")},
		"unknown user":   {nats.UserInfo("someone", "right")},
	} {
		_, err := transport.Connect(context.Background(), srv.ClientURL(), transport.Config{NoProvision: true}, append(opts, nats.MaxReconnects(0))...)
		if err == nil || !errors.Is(err, transport.ErrForbidden) || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: got %v, want an authorization failure", name, err)
		}
	}
}

func TestNKeySourceAndReader(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "bank.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, admin := secureNode(t, transport.AuthConfig{Users: []transport.User{
		{Name: "bank-worker", NKey: pub, Sources: []string{"bank.out", "bank.out.rejected"}, Buckets: []string{"detbus-snapshots"}},
		{Name: "audit", Password: "pw", Role: transport.RoleReader},
	}}, nil)
	ctx := context.Background()
	nkOpts, err := transport.NKeyOptions(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	worker := connectAs(t, srv.ClientURL(), nkOpts...)
	if _, err := worker.Write(ctx, "bank.out", []byte(`{}`)); err != nil {
		t.Fatalf("worker writes its output: %v", err)
	}
	if _, err := worker.Write(ctx, "bank.in", []byte(`{}`)); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("worker writes an input ESK: %v, want ErrForbidden", err)
	}
	// Its bucket, which the node provisions: bind, put, get, list.
	if _, err := admin.Bucket(ctx, transport.BucketConfig{Name: "detbus-snapshots"}); err != nil {
		t.Fatal(err)
	}
	kv, err := worker.Bucket(ctx, transport.BucketConfig{Name: "detbus-snapshots"})
	if err != nil {
		t.Fatalf("worker binds its snapshot bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "bank.1", []byte("state")); err != nil {
		t.Fatalf("worker puts a snapshot: %v", err)
	}
	if e, err := kv.Get(ctx, "bank.1"); err != nil || string(e.Value) != "state" {
		t.Fatalf("worker reads its snapshot: %v", err)
	}
	if keys, err := kv.Keys(ctx, ""); err != nil || len(keys) != 1 || keys[0] != "bank.1" {
		t.Fatalf("worker lists its snapshots: %v %v", keys, err)
	}

	reader := connectAs(t, srv.ClientURL(), transport.UserOptions("audit", "pw")...)
	var seen []string
	for ev, err := range reader.Events(ctx, nil, transport.ReadOptions{}) {
		if err != nil {
			t.Fatalf("reader reads the log: %v", err)
		}
		seen = append(seen, ev.ESK)
	}
	if len(seen) != 1 || seen[0] != "bank.out" {
		t.Fatalf("reader saw %v, want [bank.out]", seen)
	}
	if _, err := reader.Write(ctx, "bank.out", []byte(`{}`)); !errors.Is(err, transport.ErrForbidden) {
		t.Fatalf("reader writes: %v, want ErrForbidden", err)
	}
	if n, err := admin.Count(ctx, "bank.out"); err != nil || n != 1 {
		t.Fatalf("bank.out has %d events (%v), want 1", n, err)
	}
	if n, err := admin.Count(ctx, "bank.in"); err != nil || n != 0 {
		t.Fatalf("bank.in has %d events (%v), want 0", n, err)
	}
}

func TestAuthConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		user transport.User
		want string
	}{
		{"no password", transport.User{Name: "a", Sources: []string{"a.>"}}, "needs a name and a password"},
		{"bad nkey", transport.User{Name: "a", NKey: "SUxxx", Sources: []string{"a.>"}}, "not a public user key"},
		{"source without sources", transport.User{Name: "a", Password: "p"}, "at least one ESK pattern"},
		{"bad source pattern", transport.User{Name: "a", Password: "p", Sources: []string{"a..b"}}, `source "a..b"`},
		{"unknown role", transport.User{Name: "a", Password: "p", Role: "root"}, `role "root"`},
		{"admin with sources", transport.User{Name: "a", Password: "p", Role: transport.RoleAdmin, Sources: []string{"a"}}, "sources are for role"},
		{"bad bucket", transport.User{Name: "a", Password: "p", Sources: []string{"a"}, Buckets: []string{"a.b"}}, `bucket name "a.b"`},
	} {
		cfg := transport.DefaultServerConfig(t.TempDir())
		cfg.Auth.Users = []transport.User{tc.user}
		err := cfg.Validate()
		if !errors.Is(err, transport.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an invalid option mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeTestCerts(t, dir)
	srv, admin := secureNode(t, transport.AuthConfig{}, &transport.TLSConfig{CertFile: cert, KeyFile: key, CAFile: ca})
	ctx := context.Background()
	if !strings.HasPrefix(srv.ClientURL(), "tls://") {
		t.Fatalf("client URL %q does not say tls", srv.ClientURL())
	}
	if _, err := admin.Write(ctx, "secure.1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	l := connectAs(t, srv.ClientURL(), nats.RootCAs(ca))
	if ev, err := l.Get(ctx, "secure.1", 0); err != nil || string(ev.Data) != `{}` {
		t.Fatalf("read over TLS: %v", err)
	}
	// Without the CA the server's certificate is not trusted.
	_, err := transport.Connect(ctx, srv.ClientURL(), transport.Config{NoProvision: true}, nats.MaxReconnects(0))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connect without the CA: %v, want a certificate error", err)
	}
	// A plain-text client is refused.
	plain := "nats://" + strings.TrimPrefix(srv.ClientURL(), "tls://")
	if _, err := nats.Connect(plain, nats.MaxReconnects(0)); err == nil {
		t.Fatal("a plain-text client connected to a TLS listener")
	}
}

// writeTestCerts writes a CA and a server certificate for 127.0.0.1 and
// localhost, returning the CA, certificate and key files.
func writeTestCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "detbus test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "detbus test node"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", srvDER), write("node-key.pem", "EC PRIVATE KEY", keyDER)
}
