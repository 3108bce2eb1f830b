package transport

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Sites are the AP mode of detbus. A site is a node (or a NATS cluster of
// nodes) with a log of its own; sites link to each other with NATS
// gateways and each holds a copy of every other site's log, a JetStream
// mirror that follows its origin and resumes where it stopped after a
// partition. A write needs only its own site: the own log is a stream
// placed on the site's own servers.
//
// What a site needs of the others: the first start of a set of sites, and
// the creation of a copy when a new site appears, need a majority of the
// sites reachable (JetStream's metadata is shared across gateways); a
// write, a read, a conditional append on an ESK the site owns, and a copy
// catching up with its origin need only the sites involved.

// SiteConfig makes an embedded server a site: a NATS cluster named after
// the site (a cluster of one server unless [ServerConfig.Cluster] names
// more), with a gateway listener that other sites link to.
type SiteConfig struct {
	// Name is the site's name: 1 to 32 lowercase letters, digits or
	// '-', starting with a letter or digit. Its log is the stream
	// "<stream>_<name>" with subjects "<prefix>.<name>.>".
	Name string
	// Host and Port are the gateway listener (Host defaults to the
	// server's; Port -1 picks a free one).
	Host string
	Port int
	// Advertise is the host:port other sites dial for this site ("":
	// the listener): set it when they reach it through a proxy or NAT.
	Advertise string
	// Peers are gateway URLs of other sites, "nats://host:port", or
	// "name=nats://host:port" to name the site. One reachable peer is
	// enough: sites tell each other about the rest. A peer given without
	// its name is asked for it when the server starts, so it must be up
	// then.
	Peers []string
}

var siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidateSiteName reports whether name may name a site.
func ValidateSiteName(name string) error {
	if !siteNameRE.MatchString(name) {
		return fmt.Errorf("%w: site name %q: use 1 to 32 lowercase letters, digits or '-', starting with a letter or digit", ErrInvalidOption, name)
	}
	return nil
}

// Validate reports every problem with a site config, joined. The zero
// SiteConfig (no site) is valid.
func (c SiteConfig) Validate() error {
	if c.Name == "" {
		if c.Port != 0 || len(c.Peers) > 0 {
			return fmt.Errorf("%w: gateway port or peers given without a site name", ErrInvalidOption)
		}
		return nil
	}
	var errs []error
	if err := ValidateSiteName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Port == 0 {
		errs = append(errs, fmt.Errorf("%w: site %q needs a gateway port", ErrInvalidOption, c.Name))
	}
	for _, p := range c.Peers {
		if _, _, err := parsePeer(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parsePeer splits "name=nats://host:port" or "nats://host:port".
func parsePeer(p string) (name string, u *url.URL, err error) {
	raw := p
	if i := strings.Index(p, "="); i >= 0 && !strings.Contains(p[:i], "/") {
		name, raw = p[:i], p[i+1:]
		if err := ValidateSiteName(name); err != nil {
			return "", nil, fmt.Errorf("%w: peer %q: %v", ErrInvalidOption, p, err)
		}
	}
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	u, err = url.Parse(raw)
	if err != nil || u.Host == "" || u.Port() == "" {
		return "", nil, fmt.Errorf("%w: peer %q is not nats://host:port or name=nats://host:port", ErrInvalidOption, p)
	}
	return name, u, nil
}

// applySite configures opts for a site: the gateway, and a cluster of one
// named after the site unless the server joins a cluster of its own.
// It fills in cfg.Site's host and port.
func applySite(opts *server.Options, cfg *ServerConfig) error {
	sc := &cfg.Site
	if sc.Host == "" {
		sc.Host = cfg.Host
	}
	host := sc.Host
	if sc.Port < 0 {
		p, err := freePort(host)
		if err != nil {
			return err
		}
		sc.Port = p
	}
	gwPort := sc.Port
	opts.Gateway = server.GatewayOpts{Name: sc.Name, Host: host, Port: gwPort, Advertise: sc.Advertise, ConnectRetries: -1}
	remotes, err := resolvePeers(sc.Name, sc.Peers)
	if err != nil {
		return err
	}
	opts.Gateway.Gateways = remotes
	// A leafnode listener on loopback, for the keeper (see startKeeper);
	// leafnodes beside gateways need the system account named.
	leafPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	opts.LeafNode = server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPort}
	opts.SystemAccount = server.DEFAULT_SYSTEM_ACCOUNT
	opts.Accounts = append(opts.Accounts, server.NewAccount(server.DEFAULT_SYSTEM_ACCOUNT))
	if cfg.Cluster.Name == "" {
		// JetStream across gateways runs clustered: a site of one server
		// is a cluster that routes to itself.
		p, err := freePort(host)
		if err != nil {
			return err
		}
		opts.Cluster.Name = sc.Name
		opts.Cluster.Host = host
		opts.Cluster.Port = p
		opts.Routes = []*url.URL{{Scheme: "nats-route", Host: net.JoinHostPort(host, fmt.Sprint(p))}}
	}
	return nil
}

// freePort finds a port free on host for a listener the server opens
// later. It looks below the usual range of ephemeral ports (32768 and
// up), so that the port is not one that another program took from that
// range, checked free and closed to open it later, as tests do.
func freePort(host string) (int, error) {
	var err error
	for range 100 {
		port := 20000 + rand.IntN(12000)
		var ln net.Listener
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port))); err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("transport: find a free port on %s: %w", host, err)
}

// resolvePeers groups the peers by site name, asking a peer given without
// one for its name.
func resolvePeers(self string, peers []string) ([]*server.RemoteGatewayOpts, error) {
	byName := map[string]*server.RemoteGatewayOpts{}
	for _, p := range peers {
		name, u, err := parsePeer(p)
		if err != nil {
			return nil, err
		}
		if name == "" {
			if name, err = askGatewayName(u.Host, 5*time.Second); err != nil {
				return nil, fmt.Errorf("transport: peer %s: %w (give it as name=%s if it is not up yet)", p, err, u)
			}
		}
		if name == self {
			continue
		}
		r := byName[name]
		if r == nil {
			r = &server.RemoteGatewayOpts{Name: name}
			byName[name] = r
		}
		r.URLs = append(r.URLs, u)
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*server.RemoteGatewayOpts, 0, len(names))
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out, nil
}

// askGatewayName dials a gateway listener and reads the site name from
// the INFO it greets with.
func askGatewayName(addr string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReaderSize(conn, 64<<10).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%w: no greeting from %s: %v", ErrUnavailable, addr, err)
	}
	body, ok := strings.CutPrefix(strings.TrimSpace(line), "INFO ")
	if !ok {
		return "", fmt.Errorf("%w: %s is not a NATS gateway", ErrInvalidOption, addr)
	}
	var info struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.Gateway == "" {
		return "", fmt.Errorf("%w: %s is not a NATS gateway listener", ErrInvalidOption, addr)
	}
	return info.Gateway, nil
}

// SiteLink is the state of the link between this site and another.
type SiteLink struct {
	Site string `json:"site"`
	// Up is true while an outbound gateway connection to the site is
	// open (this site sends to it).
	Up bool `json:"up"`
	// Inbound counts the site's connections to this one.
	Inbound    int    `json:"inbound"`
	Configured bool   `json:"configured"` // named in Peers, not learned
	URL        string `json:"url,omitempty"`
	// Since is when the outbound connection was made.
	Since time.Time `json:"since,omitzero"`
	RTT   string    `json:"rtt,omitempty"`
}

// SiteLinks reports this server's links to the other sites it knows,
// sorted by site, or nil when the server is not a site.
func (s *Server) SiteLinks() []SiteLink {
	if s.cfg.Site.Name == "" {
		return nil
	}
	gz, err := s.ns.Gatewayz(&server.GatewayzOptions{})
	if err != nil || gz == nil {
		return nil
	}
	links := map[string]*SiteLink{}
	link := func(name string) *SiteLink {
		if links[name] == nil {
			links[name] = &SiteLink{Site: name}
		}
		return links[name]
	}
	for name, r := range gz.OutboundGateways {
		if name == s.cfg.Site.Name {
			continue
		}
		l := link(name)
		l.Configured = r.IsConfigured
		if r.Connection != nil {
			l.Up = true
			l.URL = net.JoinHostPort(r.Connection.IP, fmt.Sprint(r.Connection.Port))
			l.Since = r.Connection.Start
			l.RTT = r.Connection.RTT
		}
	}
	for name, rs := range gz.InboundGateways {
		if name == s.cfg.Site.Name {
			continue
		}
		link(name).Inbound += len(rs)
	}
	for _, r := range s.cfg.Site.Peers {
		if name, _, err := parsePeer(r); err == nil && name != "" && name != s.cfg.Site.Name {
			link(name).Configured = true
		}
	}
	out := make([]SiteLink, 0, len(links))
	for _, l := range links {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b SiteLink) int { return strings.Compare(a.Site, b.Site) })
	return out
}

// GatewayURL is the URL other sites give as a peer to link to this one
// ("" when the server is not a site).
func (s *Server) GatewayURL() string {
	if s.cfg.Site.Name == "" {
		return ""
	}
	addr := s.cfg.Site.Advertise
	if addr == "" {
		addr = net.JoinHostPort(s.cfg.Site.Host, fmt.Sprint(s.cfg.Site.Port))
	}
	return s.cfg.Site.Name + "=nats://" + addr
}

// startKeeper starts the keeper of a site's server ns: a server of no
// cluster, in this process, listening for nothing, that holds a leafnode
// connection to ns. NATS replays JetStream's metadata, and so restores a
// server's streams, only once the server has a route, a gateway or a
// leafnode connection; a site of one server that restarts while cut off
// from the other sites has none but the keeper's, which lets it take
// writes again at once.
func startKeeper(ns *server.Server, name string, leafPort int) (*server.Server, error) {
	o := &server.Options{ServerName: name + "-keeper", DontListen: true, NoSigs: true, NoLog: true,
		LeafNode: server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{
			URLs: []*url.URL{{Scheme: "nats-leaf", Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(leafPort))}},
		}}}}
	k, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("transport: the site's keeper: %w", err)
	}
	k.Start()
	deadline := time.Now().Add(10 * time.Second)
	for ns.NumLeafNodes() == 0 {
		if time.Now().After(deadline) {
			k.Shutdown()
			return nil, fmt.Errorf("transport: the site's keeper did not connect to %s's leafnode port %d", name, leafPort)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return k, nil
}

// repickSitePorts picks the site's internal ports again, after one was
// taken before the server opened it.
func repickSitePorts(opts *server.Options) error {
	leaf, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	opts.LeafNode.Port = leaf
	if len(opts.Routes) == 1 && opts.Routes[0].Host == net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(opts.Cluster.Port)) {
		p, err := freePort(opts.Cluster.Host)
		if err != nil {
			return err
		}
		opts.Cluster.Port = p
		opts.Routes = []*url.URL{{Scheme: "nats-route", Host: net.JoinHostPort(opts.Cluster.Host, strconv.Itoa(p))}}
	}
	return nil
}
