package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/detbus/detbus/transport"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	cfg := transport.DefaultServerConfig("./detbus-data")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "server name")
	fs.StringVar(&cfg.Host, "host", cfg.Host, "listen host for clients and monitoring")
	fs.IntVar(&cfg.Port, "port", cfg.Port, "NATS client port (-1: pick a free one)")
	fs.IntVar(&cfg.HTTPPort, "http-port", cfg.HTTPPort, "NATS monitoring port (0: off, -1: pick a free one)")
	fs.StringVar(&cfg.StoreDir, "data", cfg.StoreDir, "JetStream data directory")
	fs.StringVar(&cfg.Sync, "sync", cfg.Sync, `fsync: "" (NATS default, every 2m), "always", or an interval such as 1s`)
	fs.BoolVar(&cfg.Logs, "log", false, "print the NATS server's log")
	var lc transport.Config
	fs.StringVar(&lc.Stream, "stream", transport.DefaultStream, "JetStream stream holding the log")
	fs.StringVar(&lc.Prefix, "prefix", transport.DefaultPrefix, "subject prefix of ESKs")
	fs.IntVar(&lc.Replicas, "replicas", transport.DefaultReplicas, "stream replicas")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	srv, err := transport.StartServer(cfg)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l, err := transport.Connect(octx, srv.ClientURL(), lc)
	if err != nil {
		return err
	}
	defer l.Close()
	svc, err := transport.NewService(l)
	if err != nil {
		return err
	}
	defer svc.Stop()
	url := srv.ClientURL()
	sync := cfg.Sync
	if sync == "" {
		sync = "NATS default (every 2m: a power loss can drop the last acknowledged writes; --sync always to flush each write)"
	}
	fmt.Fprintf(stdout, `detbus node ready
  NATS:        %s  (stream %s, subjects %s.>)
  monitoring:  %s
  data:        %s
  fsync:       %s

Try next, in another terminal:
  go run ./cmd/detbus write orders.eu '{"side":"buy","qty":3}'
  go run ./cmd/detbus write orders.eu '{"side":"sell","qty":1}' --index 1
  go run ./cmd/detbus tail orders.eu --follow
  go run ./cmd/detbus status
  nats --server %s pub -J %s.orders.eu '{"side":"buy","qty":7}'
  nats --server %s req %s '{"esk":"orders.eu","index":3,"event":{"qty":1}}'
Stop with Ctrl-C.
`, url, lc.Stream, lc.Prefix, orNone(srv.MonitorURL()), cfg.StoreDir, sync, url, lc.Prefix, url, transport.SubjectExistsOrWrite)
	<-ctx.Done()
	fmt.Fprintln(stdout, "detbus node stopping")
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}
