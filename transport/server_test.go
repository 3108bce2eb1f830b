package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

func TestServerSyncSettings(t *testing.T) {
	for _, c := range []struct {
		sync     string
		always   bool
		interval time.Duration
	}{
		{transport.SyncDefault, false, 2 * time.Minute},
		{transport.SyncAlways, true, 0},
		{"1s", false, time.Second},
	} {
		s, err := transport.StartServer(transport.ServerConfig{Name: "sync", DontListen: true, StoreDir: t.TempDir(), Sync: c.sync})
		if err != nil {
			t.Fatal(err)
		}
		jc := s.NATS().JetStreamConfig()
		s.Shutdown()
		if jc.SyncAlways != c.always || (c.interval != 0 && jc.SyncInterval != c.interval) {
			t.Errorf("sync %q: always=%v interval=%v", c.sync, jc.SyncAlways, jc.SyncInterval)
		}
	}
	err := transport.ServerConfig{Sync: "sometimes", DontListen: true, Cluster: transport.ClusterConfig{Name: "c"}}.Validate()
	for _, want := range []string{"StoreDir is required", `sync "sometimes"`, "DontListen works only for a single node", "needs routes"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) || !errors.Is(err, transport.ErrInvalidOption) {
			t.Errorf("Validate: %v, want it to say %q", err, want)
		}
	}
}

func TestProvisionedStream(t *testing.T) {
	s := testnats.Node(t)
	ctx := ctxT(t)
	l := testnats.Log(t, s.ClientURL(), transport.Config{MaxPayload: 2048})
	testnats.Log(t, s.ClientURL(), transport.Config{MaxPayload: 2048}) // idempotent
	if _, err := l.Write(ctx, "p.a", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	js := l.JetStream()
	stream, err := js.Stream(ctx, transport.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowRollup || cfg.Subjects[0] != "events.>" || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("stream config %+v", cfg)
	}
	if err := stream.DeleteMsg(ctx, 1); err == nil {
		t.Error("deleting an event succeeded")
	}
	if err := stream.Purge(ctx); err == nil {
		t.Error("purging the log succeeded")
	}
	// A publisher that bypasses the SDK still cannot store an oversized event.
	if _, err := js.Publish(ctx, "events.p.a", bytes.Repeat([]byte("x"), 8192)); err == nil {
		t.Error("an oversized raw publish was stored")
	}
	if n, _ := l.Count(ctx, "p.a"); n != 1 {
		t.Fatalf("count %d after refused operations", n)
	}
	// Bad configs are refused before anything is created.
	_, err = transport.Open(context.Background(), l.Conn(), transport.Config{Stream: "a.b", Replicas: 9, Prefix: "x.*"})
	for _, want := range []string{"stream name", "replicas 9", "prefix"} {
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("Open with a bad config: %v, want it to say %q", err, want)
		}
	}
}

// TestStartServerSaysWhy: a port that is taken or a data directory that
// cannot be made fails at once, naming the address or the path, instead
// of a wait for a server that will never be ready.
func TestStartServerSaysWhy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	addr := busy.Addr().String()
	free := testnats.FreePorts(t, 1)[0]
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() transport.ServerConfig {
		return transport.ServerConfig{Name: "why", Host: "127.0.0.1", Port: free, StoreDir: t.TempDir()}
	}
	for _, c := range []struct {
		name   string
		config func(*transport.ServerConfig)
		want   []string
		target error
	}{
		{"client port", func(c *transport.ServerConfig) { c.Port = port }, []string{"client port " + addr}, syscall.EADDRINUSE},
		{"monitoring port", func(c *transport.ServerConfig) { c.HTTPPort = port }, []string{"HTTP monitoring port " + addr}, syscall.EADDRINUSE},
		{"route port", func(c *transport.ServerConfig) {
			c.Cluster = transport.ClusterConfig{Name: "c", Host: "127.0.0.1", Port: port, Routes: []string{"nats-route://" + addr}}
		}, []string{"cluster route port " + addr}, syscall.EADDRINUSE},
		{"data directory", func(c *transport.ServerConfig) { c.StoreDir = filepath.Join(file, "data") }, []string{"data directory " + filepath.Join(file, "data")}, syscall.ENOTDIR},
		{"JetStream's directory", func(c *transport.ServerConfig) {
			if err := os.WriteFile(filepath.Join(c.StoreDir, "jetstream"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"data directory "}, syscall.ENOTDIR},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.config(&cfg)
			start := time.Now()
			s, err := transport.StartServer(cfg)
			if err == nil {
				s.Shutdown()
				t.Fatal("the server started")
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("failed after %v", took)
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if !errors.Is(err, c.target) {
				t.Errorf("error %q does not wrap %v", err, c.target)
			}
			// Nothing was left listening on the free port.
			ln, lerr := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", free))
			if lerr != nil {
				t.Fatalf("the client port is still taken: %v", lerr)
			}
			ln.Close()
		})
	}
}
