package transport

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestRunServerReportsStartErrors: an error the NATS server only logs
// while starting (here a client port taken after StartServer checked it)
// stops the start at once and is returned.
func TestRunServerReportsStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: busy.Addr().(*net.TCPAddr).Port,
		JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = runServer(ns, "taken", false)
	if err == nil {
		ns.Shutdown()
		t.Fatal("the server started")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("failed after %v", took)
	}
	if !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q names neither the address nor the reason", err)
	}
}
