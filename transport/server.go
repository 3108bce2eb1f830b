package transport

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Sync modes for [ServerConfig.Sync].
const (
	// SyncDefault keeps NATS's own default: the file store is flushed to
	// disk every two minutes. An acknowledged write survives a process
	// crash (the OS has it) but can be lost on power failure or kernel
	// crash within that interval.
	SyncDefault = ""
	// SyncAlways flushes to disk before every acknowledgement: nothing
	// acknowledged is lost on power failure, at a large cost in write
	// throughput.
	SyncAlways = "always"
)

// ServerConfig configures an embedded NATS server. The zero value is not
// valid; start from [DefaultServerConfig].
type ServerConfig struct {
	// Name is the server name; in a cluster each node needs its own.
	Name string
	// Host and Port are the client listener. Port -1 picks a free port.
	Host string
	Port int
	// DontListen serves in-process connections only (single node only).
	DontListen bool
	// HTTPPort is the monitoring port (0 disables it, -1 picks a free one).
	HTTPPort int
	// StoreDir holds the JetStream file store.
	StoreDir string
	// Sync is SyncDefault, SyncAlways, or a Go duration such as "1s":
	// how often the file store is flushed to disk.
	Sync string
	// Cluster, when Name is set, joins this server to a NATS cluster.
	Cluster ClusterConfig
	// Logs enables the server's own log lines on stderr.
	Logs bool
	// Auth lists the users allowed to connect; with none, any client may.
	Auth AuthConfig
	// TLS, when set, makes the client listener require TLS.
	TLS *TLSConfig
	// Site, when named, makes the server a site linked to other sites
	// (see [SiteConfig]).
	Site SiteConfig
}

// ClusterConfig places an embedded server in a NATS cluster.
type ClusterConfig struct {
	Name   string   // cluster name, the same on every node
	Host   string   // route listener host
	Port   int      // route listener port
	Routes []string // nats-route://host:port of every node, this one included
	// Advertise is the host:port other nodes are told to dial for this
	// node's routes ("" advertises the route listener): set it when peers
	// reach the node through a proxy or NAT.
	Advertise string
}

// DefaultServerConfig is a single node on 127.0.0.1:4222 with monitoring
// on 8222, storing under dir, with NATS's default sync interval.
func DefaultServerConfig(dir string) ServerConfig {
	return ServerConfig{Name: "detbus", Host: "127.0.0.1", Port: 4222, HTTPPort: 8222, StoreDir: dir}
}

// Validate reports every problem with the config, joined.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.StoreDir == "" {
		errs = append(errs, fmt.Errorf("%w: StoreDir is required", ErrInvalidOption))
	}
	if _, _, err := parseSync(c.Sync); err != nil {
		errs = append(errs, err)
	}
	if c.DontListen && c.Cluster.Name != "" {
		errs = append(errs, fmt.Errorf("%w: DontListen works only for a single node, not in cluster %q", ErrInvalidOption, c.Cluster.Name))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil {
		if _, err := c.TLS.serverTLS(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Cluster.Name != "" && len(c.Cluster.Routes) == 0 {
		errs = append(errs, fmt.Errorf("%w: cluster %q needs routes", ErrInvalidOption, c.Cluster.Name))
	}
	if err := c.Site.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Site.Name != "" && c.Cluster.Name != "" && c.Cluster.Name != c.Site.Name {
		errs = append(errs, fmt.Errorf("%w: the cluster of site %q must be named %q, not %q", ErrInvalidOption, c.Site.Name, c.Site.Name, c.Cluster.Name))
	}
	if c.Site.Name != "" && c.DontListen {
		errs = append(errs, fmt.Errorf("%w: a site must listen for clients", ErrInvalidOption))
	}
	return errors.Join(errs...)
}

func parseSync(s string) (interval time.Duration, always bool, err error) {
	switch s {
	case SyncDefault:
		return 0, false, nil
	case SyncAlways:
		return 0, true, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf("%w: sync %q is neither %q nor a positive duration", ErrInvalidOption, s, SyncAlways)
	}
	return d, false, nil
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns  *server.Server
	cfg ServerConfig
	// node is the admin identity of the node's own clients when Auth has
	// users: a random password made at start.
	node *User
	// keeper holds a leafnode connection to a site's server (see
	// startKeeper).
	keeper *server.Server
}

// StartServer starts an embedded NATS server with JetStream and waits until
// it accepts connections. Stop it with [Server.Shutdown].
//
// What keeps the server from starting fails at once, naming the address or
// path: a port that is taken (the error wraps the listener's, e.g.
// syscall.EADDRINUSE), a data directory that cannot be made (wrapping the
// file system's error, e.g. fs.ErrPermission), or any other error the
// server reports while starting, such as JetStream refusing its store.
//
// Errors: [ErrInvalidOption] (wrapped) for a config that does not
// validate; the errors above; after 30s without a listener, an error
// saying so.
func StartServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkResources(cfg); err != nil {
		return nil, err
	}
	interval, always, _ := parseSync(cfg.Sync)
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       cfg.Host,
		Port:       cfg.Port,
		DontListen: cfg.DontListen,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: always,
		NoSigs:     true,
		NoLog:      !cfg.Logs,
	}
	if interval > 0 {
		opts.SyncInterval = interval
	}
	if cfg.HTTPPort != 0 {
		opts.HTTPHost = cfg.Host
		opts.HTTPPort = cfg.HTTPPort
	}
	if cfg.Cluster.Name != "" {
		opts.Cluster.Name = cfg.Cluster.Name
		opts.Cluster.Host = cfg.Cluster.Host
		opts.Cluster.Port = cfg.Cluster.Port
		opts.Cluster.Advertise = cfg.Cluster.Advertise
		for _, r := range cfg.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q: %v", ErrInvalidOption, r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if cfg.Site.Name != "" {
		if err := applySite(opts, &cfg); err != nil {
			return nil, err
		}
	}
	var node *User
	if len(cfg.Auth.Users) > 0 {
		node = &User{Name: "detbus-node-" + nuid.Next(), Password: nuid.Next() + nuid.Next(), Role: RoleAdmin}
		cfg.Auth.Users = append(slices.Clip(cfg.Auth.Users), *node)
	}
	cfg.Auth.apply(opts)
	if cfg.TLS != nil {
		tc, err := cfg.TLS.serverTLS()
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
		opts.TLS = true
		opts.TLSVerify = cfg.TLS.VerifyClients
		opts.TLSTimeout = 5
	}
	var ns *server.Server
	for attempt := 1; ; attempt++ {
		var err error
		if ns, err = server.NewServer(opts); err != nil {
			return nil, fmt.Errorf("transport: start NATS server: %w", err)
		}
		err = runServer(ns, cfg.Name, cfg.Logs)
		if err == nil {
			break
		}
		// A site's internal ports (its route to itself, its keeper's
		// leafnode listener) are picked free but opened later, and
		// another server starting at once may have taken one: pick again.
		if cfg.Site.Name == "" || attempt == 5 || !strings.Contains(err.Error(), "address already in use") ||
			!(strings.Contains(err.Error(), "leafnode port") || strings.Contains(err.Error(), "router port")) {
			return nil, err
		}
		if err := repickSitePorts(opts); err != nil {
			return nil, err
		}
	}
	srv := &Server{ns: ns, cfg: cfg, node: node}
	if cfg.Site.Name != "" {
		var err error
		if srv.keeper, err = startKeeper(ns, cfg.Name, opts.LeafNode.Port); err != nil {
			ns.Shutdown()
			return nil, err
		}
	}
	return srv, nil
}

// runServer starts ns and waits until it accepts connections. An error
// the server reports while starting (it logs it and goes on: a port that
// is taken, JetStream refusing its store) stops it and is returned at
// once. With logs, the server's log goes to stderr.
func runServer(ns *server.Server, name string, logs bool) error {
	var next server.Logger
	if logs {
		ns.ConfigureLogger()
		next = ns.Logger()
	}
	lg := &startLogger{next: next}
	ns.SetLoggerV2(lg, false, false, false)
	ns.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := lg.err(); err != nil {
			ns.Shutdown()
			return fmt.Errorf("transport: NATS server %q: %w", name, err)
		}
		if ns.ReadyForConnections(100 * time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return fmt.Errorf("transport: NATS server %q not ready for connections after 30s", name)
		}
	}
	if err := lg.err(); err != nil { // reported while the listeners opened
		ns.Shutdown()
		return fmt.Errorf("transport: NATS server %q: %w", name, err)
	}
	return nil
}

// checkResources makes the data directory and checks that the ports to
// listen on are free, so that StartServer can say what is wrong before
// the server starts: a NATS server that cannot listen or store only logs
// it and goes on.
func checkResources(cfg ServerConfig) error {
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return fmt.Errorf("transport: data directory %s: %w", cfg.StoreDir, err)
	}
	// JetStream keeps its files in this subdirectory: making it tells a
	// directory we may not write to.
	if err := os.MkdirAll(filepath.Join(cfg.StoreDir, server.JetStreamStoreDir), 0o750); err != nil {
		return fmt.Errorf("transport: data directory %s: %w", cfg.StoreDir, err)
	}
	type listener struct {
		what, host string
		port       int
	}
	var ports []listener
	if !cfg.DontListen {
		port := cfg.Port
		if port == 0 {
			port = server.DEFAULT_PORT
		}
		ports = append(ports, listener{"client port", cfg.Host, port})
	}
	ports = append(ports, listener{"HTTP monitoring port", cfg.Host, cfg.HTTPPort})
	if cfg.Cluster.Name != "" {
		ports = append(ports, listener{"cluster route port", cfg.Cluster.Host, cfg.Cluster.Port})
	}
	if cfg.Site.Name != "" {
		host := cfg.Site.Host
		if host == "" {
			host = cfg.Host
		}
		ports = append(ports, listener{"gateway port", host, cfg.Site.Port})
	}
	for _, p := range ports {
		if p.port <= 0 {
			continue // none, or any free port
		}
		addr := net.JoinHostPort(p.host, strconv.Itoa(p.port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("transport: NATS %s %s: %w", p.what, addr, err)
		}
		ln.Close()
	}
	return nil
}

// startLogger receives the embedded server's log: it keeps the first
// fatal error, which the server logs (and goes on) when it cannot listen
// or start JetStream, for StartServer to return, and passes every line
// on to next when there is one (a fatal one as an error: it must not end
// the process).
type startLogger struct {
	next  server.Logger
	mu    sync.Mutex
	fatal error
}

func (l *startLogger) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *startLogger) Fatalf(format string, v ...any) {
	l.mu.Lock()
	if l.fatal == nil {
		l.fatal = fmt.Errorf(format, v...)
	}
	l.mu.Unlock()
	if l.next != nil {
		l.next.Errorf(format, v...)
	}
}

func (l *startLogger) Noticef(format string, v ...any) {
	if l.next != nil {
		l.next.Noticef(format, v...)
	}
}

func (l *startLogger) Warnf(format string, v ...any) {
	if l.next != nil {
		l.next.Warnf(format, v...)
	}
}

func (l *startLogger) Errorf(format string, v ...any) {
	if l.next != nil {
		l.next.Errorf(format, v...)
	}
}

func (l *startLogger) Debugf(format string, v ...any) {
	if l.next != nil {
		l.next.Debugf(format, v...)
	}
}

func (l *startLogger) Tracef(format string, v ...any) {
	if l.next != nil {
		l.next.Tracef(format, v...)
	}
}

// ClientOptions are the options the node's own clients connect with: when
// the server has users, the credentials of an admin made for the node at
// start (known only to this process); with TLS, the server's CA. Pass them
// to [Connect] or nats.Connect along with [Server.ClientURL].
func (s *Server) ClientOptions() []nats.Option {
	var opts []nats.Option
	if s.node != nil {
		opts = append(opts, nats.UserInfo(s.node.Name, s.node.Password))
	}
	if t := s.cfg.TLS; t != nil {
		if t.CAFile != "" {
			opts = append(opts, nats.RootCAs(t.CAFile))
		}
	}
	return opts
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// MonitorURL is the monitoring endpoint, or "" when monitoring is off.
func (s *Server) MonitorURL() string {
	addr := s.ns.MonitorAddr()
	if addr == nil {
		return ""
	}
	return "http://" + net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
}

// NATS returns the underlying server, for options this package does not
// wrap.
func (s *Server) NATS() *server.Server { return s.ns }

// Config returns the config the server was started with.
func (s *Server) Config() ServerConfig { return s.cfg }

// Shutdown stops the server gracefully and waits until it has stopped.
func (s *Server) Shutdown() {
	if s.keeper != nil {
		s.keeper.Shutdown()
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
