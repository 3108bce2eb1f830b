package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/internal/node/loghttp"
	"github.com/detbus/detbus/internal/telemetry"
	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/tasks/taskshttp"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transform/board"
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
	fs.StringVar(&cfg.Cluster.Name, "cluster", "", "join a NATS cluster of this name (needs --cluster-port and --routes)")
	fs.StringVar(&cfg.Cluster.Host, "cluster-host", "127.0.0.1", "route listener host")
	fs.IntVar(&cfg.Cluster.Port, "cluster-port", 0, "route listener port")
	routes := fs.String("routes", "", "comma-separated nats-route://host:port of every node")
	fs.StringVar(&cfg.Cluster.Advertise, "cluster-advertise", "", "host:port other nodes dial for this node's routes (default: the route listener)")
	var lc transport.Config
	fs.StringVar(&lc.Stream, "stream", transport.DefaultStream, "JetStream stream holding the log")
	fs.StringVar(&lc.Prefix, "prefix", transport.DefaultPrefix, "subject prefix of ESKs")
	fs.IntVar(&lc.Replicas, "replicas", 0, "stream replicas (0: 1 for a new stream, an existing stream's unchanged)")
	httpAddr := fs.String("http", "127.0.0.1:8080", `HTTP address for the kv and tasks APIs and UI, /metrics and /healthz ("" to disable)`)
	httpToken := fs.String("http-token", "", "bearer token the HTTP API and UI require (default $DETBUS_HTTP_TOKEN; needed when --http is beyond loopback)")
	var sec securityFlags
	sec.register(fs)
	anonymous := fs.Bool("allow-anonymous", false, "with --host beyond loopback and no --auth, accept clients without credentials (any client on the network may then write any ESK)")
	var site siteFlags
	site.register(fs)
	var chain chainFlags
	chain.register(fs)
	var dets multiFlag
	fs.Var(&dets, "transform", "run an instance of this deterministic transform in the node (repeatable; "+transformNames()+")")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	for _, d := range dets {
		if _, ok := transforms[d]; !ok {
			return usagef("unknown transform %q (known: %s)", d, transformNames())
		}
	}
	if *httpToken == "" {
		*httpToken = os.Getenv("DETBUS_HTTP_TOKEN")
	}
	if *routes != "" {
		cfg.Cluster.Routes = strings.Split(*routes, ",")
	}
	if err := site.apply(&cfg, &lc, flagSet(fs, "name")); err != nil {
		return err
	}
	if err := sec.apply(&cfg, lc); err != nil {
		return err
	}
	if cfg.Site.Name != "" && len(cfg.Auth.Users) > 0 {
		return usagef("--site with --auth: users' permissions name one stream, and do not cover a site's own log and copies yet")
	}
	if len(cfg.Auth.Users) == 0 && !*anonymous && !isLoopback(cfg.Host) {
		return usagef("serve: --host %s accepts clients beyond this machine: give --auth FILE with users, or --allow-anonymous to let any client on the network write any ESK", cfg.Host)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	// The HTTP server stops when serve returns, a start that failed
	// included.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	tel, err := telemetry.Setup(ctx, "detbus")
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.WithoutCancel(ctx))
	httpURL, uiURL, tasksURL := "off", "off", "off"
	var web *nodeHTTP
	if *httpAddr != "" {
		if web, err = serveNodeHTTP(ctx, *httpAddr, *httpToken, cfg.Auth.Users, tel); err != nil {
			return err
		}
		httpURL = "http://" + web.addr + "/metrics"
		uiURL = "http://" + web.addr + "/"
		tasksURL = "http://" + web.addr + "/tasks"
		switch {
		case len(cfg.Auth.Users) > 0:
			uiURL += "  (sign in as a user of --auth; API: HTTP Basic authentication"
			if *httpToken != "" {
				uiURL += " or Authorization: Bearer <token>"
			}
			uiURL += ")"
		case web.token:
			uiURL += "  (token: open once with ?token=<token>, or enter it; API: Authorization: Bearer <token>)"
		}
	}
	srv, err := transport.StartServer(cfg)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	l, err := openWhenReady(ctx, srv.ClientURL(), lc, srv.ClientOptions()...)
	if ctx.Err() != nil {
		return nil // stopped while waiting for the cluster
	}
	if err != nil {
		return err
	}
	defer l.Close()
	var svcOpts []transport.ServiceOption
	if len(cfg.Auth.Users) > 0 {
		svcOpts = append(svcOpts, transport.WithAuthorizer(cfg.Auth.Authorizer()))
	}
	svc, err := transport.NewService(l, svcOpts...)
	if err != nil {
		return err
	}
	defer svc.Stop()
	if err := provisionBuckets(ctx, l); err != nil {
		return err
	}
	siteLine := "off"
	if cfg.Site.Name != "" {
		sn, stopSite, err := startSite(ctx, l, srv)
		if err != nil {
			return err
		}
		defer stopSite()
		if web != nil {
			web.mountSites(sn)
		}
		siteLine = fmt.Sprintf("%s  (other sites give --peer %s; own log %s, copies of the others beside it)", cfg.Site.Name, srv.GatewayURL(), l.Config().Stream)
	}
	if web != nil {
		nkv, err := startNodeKV(ctx, l, cfg.Name, web)
		if err != nil {
			return err
		}
		defer nkv.Close()
		tc, err := openTasks(ctx, l)
		if err != nil {
			return err
		}
		defer tc.Close()
		stopTasks, err := tc.Serve()
		if err != nil {
			return err
		}
		defer stopTasks()
		th, err := taskshttp.New(tc, taskshttp.Options{})
		if err != nil {
			return err
		}
		web.mountTasks(th)
		tb, err := board.New(l, board.Options{})
		if err != nil {
			return err
		}
		stopBoard := tb.Start(ctx)
		defer stopBoard()
		web.mountTransforms(tb.Handler())
		lh, err := loghttp.New(l, loghttp.Options{})
		if err != nil {
			return err
		}
		web.mountLog(lh)
	}
	defer chain.start(ctx, l, cfg.Name)()
	for _, d := range dets {
		stop, err := runInNode(ctx, l, d, cfg.Name)
		if err != nil {
			return err
		}
		defer stop()
	}
	url := srv.ClientURL()
	sync := cfg.Sync
	if sync == "" {
		sync = "NATS default (every 2m: a power loss can drop the last acknowledged writes; --sync always to flush each write)"
	}
	fmt.Fprintf(stdout, `detbus node ready
  NATS:        %s  (stream %s, subjects %s.>)
  monitoring:  %s
  metrics:     %s
  kv UI:       %s
  tasks UI:    %s
  transforms:  %s
  site:        %s
  data:        %s
  fsync:       %s
  auth:        %s

Try next, in another terminal:
  go run ./cmd/detbus write orders.eu '{"side":"buy","qty":3}'
  go run ./cmd/detbus write orders.eu '{"side":"sell","qty":1}' --index 1
  go run ./cmd/detbus tail orders.eu --follow
  go run ./cmd/detbus status
  nats --server %s pub -J %s.orders.eu '{"side":"buy","qty":7}'
  nats --server %s req %s '{"esk":"orders.eu","index":3,"event":{"qty":1}}'
Stop with Ctrl-C.
`, url, l.Config().Stream, l.Config().Prefix, orNone(srv.MonitorURL()), httpURL, uiURL, tasksURL, orNone(strings.Join(dets, ", ")), siteLine, cfg.StoreDir, sync, describeAuth(cfg), url, l.Config().Prefix, url, transport.SubjectExistsOrWrite)
	<-ctx.Done()
	fmt.Fprintln(stdout, "detbus node stopping")
	return nil
}

// provisionBuckets creates the buckets the node and its users keep state
// in (DET snapshots and status, kv and tasks snapshots), so that users,
// who may use buckets but not create them, find them there.
func provisionBuckets(ctx context.Context, l *transport.Log) error {
	return retry(ctx, "provision the buckets", func(ctx context.Context) error {
		if _, err := transform.OpenSnapshotStore(ctx, l, ""); err != nil {
			return err
		}
		if _, err := transform.OpenStatusBoard(ctx, l); err != nil {
			return err
		}
		if _, err := l.Objects(ctx, kv.DefaultSnapshotBucket, "detbus kv snapshots", true); err != nil {
			return err
		}
		_, err := l.Objects(ctx, tasks.DefaultSnapshotBucket, "detbus tasks snapshots", true)
		return err
	})
}

// openKV opens the node's kv store (its snapshots named after the node),
// retrying while the cluster cannot place the snapshot bucket yet.
func openKV(ctx context.Context, l *transport.Log, node string) (*kv.Store, error) {
	var store *kv.Store
	err := retry(ctx, "open the kv store", func(ctx context.Context) (err error) {
		// At a site, writes carry HLC time: the sites' clocks feed on
		// each other's, which keeps causality across sites.
		store, err = kv.Open(ctx, l, kv.Options{Replica: node, StampHLC: l.Site() != ""})
		return err
	})
	return store, err
}

// openTasks opens the node's tasks client, retrying while the log does
// not answer.
func openTasks(ctx context.Context, l *transport.Log) (*tasks.Client, error) {
	var c *tasks.Client
	err := retry(ctx, "open the tasks client", func(ctx context.Context) (err error) {
		c, err = tasks.Open(ctx, l, tasks.Options{})
		return err
	})
	return c, err
}

// openWhenReady opens the log, retrying while JetStream cannot place the
// stream yet: in a cluster, until enough nodes have joined.
func openWhenReady(ctx context.Context, url string, lc transport.Config, opts ...nats.Option) (*transport.Log, error) {
	var l *transport.Log
	err := retry(ctx, "provision the log", func(ctx context.Context) (err error) {
		l, err = transport.Connect(ctx, url, lc, opts...)
		return err
	})
	return l, err
}

// runInNode runs an instance of the named DET inside the node until the
// returned stop function is called.
func runInNode(ctx context.Context, l *transport.Log, name, node string) (stop func(), err error) {
	store, board, err := openBuckets(ctx, l)
	if err != nil {
		return nil, err
	}
	r, err := transform.NewRunner(transform.Config{Spec: transforms[name](), Log: l, Instance: node + "-" + name,
		Snapshots: store, Board: board})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			slog.Error("transform stopped", "transform", name, "err", err)
		}
	}, nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

// isLoopback reports whether a listen host accepts only clients on this
// machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
