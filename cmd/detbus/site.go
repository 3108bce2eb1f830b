package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/detbus/detbus/transport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// siteStatusSubject is where a site's node answers with its siteReport.
func siteStatusSubject(site string) string {
	return transport.ServiceName + ".sites." + site + ".status"
}

// siteFlags are serve's flags for the site mode.
type siteFlags struct {
	name      string
	host      string
	port      int
	advertise string
	peers     multiFlag
}

func (f *siteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "site", "", "run as this site: a log of its own that keeps taking writes through a partition, and copies of the other sites' logs (needs --gateway-port)")
	fs.StringVar(&f.host, "gateway-host", "", "gateway listener host for links to other sites (default: --host)")
	fs.IntVar(&f.port, "gateway-port", 7222, "gateway listener port for links to other sites (-1: pick a free one)")
	fs.StringVar(&f.advertise, "gateway-advertise", "", "host:port other sites dial for this one (default: the gateway listener)")
	fs.Var(&f.peers, "peer", "gateway URL of another site, nats://host:port or name=nats://host:port (repeatable; one is enough to learn the rest)")
}

// apply makes cfg a site and lc its own log; nameSet says whether --name
// was given (by default a site's server is named after it).
func (f *siteFlags) apply(cfg *transport.ServerConfig, lc *transport.Config, nameSet bool) error {
	if f.name == "" {
		if len(f.peers) > 0 || f.advertise != "" {
			return usagef("--peer and --gateway-advertise need --site")
		}
		return nil
	}
	if err := validSiteFlag(f.name); err != nil {
		return err
	}
	cfg.Site = transport.SiteConfig{Name: f.name, Host: f.host, Port: f.port, Advertise: f.advertise, Peers: f.peers}
	if !nameSet {
		cfg.Name = f.name
	}
	lc.Site = f.name
	return nil
}

// siteReport is what a site's node says of itself: its links to the
// other sites and its copies of their logs.
type siteReport struct {
	Site    string                 `json:"site"`
	Server  string                 `json:"server"`
	Gateway string                 `json:"gateway"` // the peer URL other sites give
	Stream  string                 `json:"stream"`
	Events  uint64                 `json:"events"`
	Links   []transport.SiteLink   `json:"links"`
	Copies  []transport.CopyStatus `json:"copies"`
	// Chains is, by origin, how far this site's copy of its log is
	// verified against the origin's checkpoints, and what disagrees.
	Chains map[string]copyChain `json:"chains"`
	Error  string               `json:"error,omitempty"`
	Time   time.Time            `json:"time"`
}

// copyChain is the verification of a copy's hash chain.
type copyChain struct {
	Verified uint64   `json:"verified"` // the position its checkpoints confirm
	Read     uint64   `json:"read"`     // the last position hashed
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// siteNode keeps a site's copies made and reports on them.
type siteNode struct {
	l   *transport.Log
	srv *transport.Server

	mu     sync.Mutex
	last   siteReport
	chains map[string]copyChain                     // by origin
	resume map[string]*transport.VerifiedCheckpoint // where each copy's verification goes on
}

// startSite makes the site's copies of the other sites' logs, now and
// every few seconds (a site that appears is copied once a majority of the
// sites answers), answers on siteStatusSubject, and reports copy lag and
// link state as metrics. It runs until ctx is done.
func startSite(ctx context.Context, l *transport.Log, srv *transport.Server) (*siteNode, func(), error) {
	n := &siteNode{l: l, srv: srv, chains: map[string]copyChain{}, resume: map[string]*transport.VerifiedCheckpoint{}}
	stopSvc, err := l.Serve("detbus-sites", "1.0.0", "the site's links and copies", []transport.Endpoint{{
		Name: "status", Subject: siteStatusSubject(l.Site()),
		Handle: func(ctx context.Context, _ []byte) (any, error) { return n.report(ctx), nil },
	}})
	if err != nil {
		return nil, nil, err
	}
	m := otel.GetMeterProvider().Meter("github.com/detbus/detbus/cmd/detbus")
	lag, _ := m.Int64ObservableGauge("detbus.site.copy.lag", metric.WithDescription("events the origin has that this site's copy has not"))
	behind, _ := m.Float64ObservableGauge("detbus.site.copy.behind", metric.WithUnit("s"), metric.WithDescription("age of the oldest event of the origin not in the copy yet"))
	up, _ := m.Int64ObservableGauge("detbus.site.link.up", metric.WithDescription("1 while this site's link to the other site is up"))
	reg, _ := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		n.mu.Lock()
		r := n.last
		n.mu.Unlock()
		for _, c := range r.Copies {
			at := metric.WithAttributes(attribute.String("origin", c.Origin))
			o.ObserveInt64(lag, int64(c.Lag), at)
			o.ObserveFloat64(behind, c.Behind.Seconds(), at)
		}
		for _, k := range r.Links {
			v := int64(0)
			if k.Up {
				v = 1
			}
			o.ObserveInt64(up, v, metric.WithAttributes(attribute.String("site", k.Site)))
		}
		return nil
	}, lag, behind, up)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var lastErr string
		for wait := time.Second; ; wait = min(2*wait, 10*time.Second) {
			_, err := l.SyncCopies(ctx)
			if msg := errText(err); msg != lastErr && ctx.Err() == nil {
				if err != nil {
					slog.Warn("site: copies of the other sites", "site", l.Site(), "err", err)
				}
				lastErr = msg
			}
			n.verifyCopies(ctx)
			n.report(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	return n, func() {
		cancel()
		<-done
		if reg != nil {
			_ = reg.Unregister()
		}
		_ = stopSvc()
	}, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// report gathers the site's report now and keeps it for the metrics.
func (n *siteNode) report(ctx context.Context) siteReport {
	r := siteReport{Site: n.l.Site(), Server: n.srv.Config().Name, Gateway: n.srv.GatewayURL(), Stream: n.l.Config().Stream,
		Links: n.srv.SiteLinks(), Time: time.Now().UTC()}
	if seq, err := n.l.LastSeq(ctx, ">"); err == nil {
		r.Events = seq // the log neither deletes nor purges
	}
	copies, err := n.l.Copies(ctx)
	r.Copies = copies
	if err != nil {
		r.Error = err.Error()
	}
	if r.Links == nil {
		r.Links = []transport.SiteLink{}
	}
	if r.Copies == nil {
		r.Copies = []transport.CopyStatus{}
	}
	n.mu.Lock()
	r.Chains = maps.Clone(n.chains)
	n.last = r
	n.mu.Unlock()
	return r
}

// verifyCopies goes on verifying each copy's hash chain from where it
// stopped: the events copied since, against the origin's checkpoints.
// A problem stays reported.
func (n *siteNode) verifyCopies(ctx context.Context) {
	origins, _ := n.l.Origins(ctx)
	for _, o := range origins {
		c, err := n.l.Copy(ctx, o)
		if err != nil {
			continue // no copy here yet
		}
		n.mu.Lock()
		from, st := n.resume[o], n.chains[o]
		n.mu.Unlock()
		rep, err := c.VerifyChain(ctx, transport.VerifyOptions{From: from})
		_ = c.Close()
		st.Error = ""
		if err != nil && !errors.Is(err, transport.ErrChainMismatch) {
			st.Error = err.Error()
		}
		for _, p := range rep.Problems {
			if msg := p.String(); !slices.Contains(st.Problems, msg) {
				st.Problems = append(st.Problems, msg)
				slog.Error("site: the copy of another site's log disagrees with its checkpoints", "origin", o, "problem", msg)
			}
		}
		if rep.To > st.Read {
			st.Read = rep.To
		}
		n.mu.Lock()
		if rep.Resume != nil && len(rep.Problems) == 0 {
			n.resume[o] = rep.Resume
			st.Verified = rep.Resume.Seq
		}
		n.chains[o] = st
		n.mu.Unlock()
	}
}

// ServeHTTP answers GET /api/sites with the site's report.
func (n *siteNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || (r.URL.Path != "/api/sites" && r.URL.Path != "/api/sites/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("{\"error\":\"GET /api/sites is the only path here\"}\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(n.report(r.Context()))
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// validSiteFlag checks a site name given on the command line.
func validSiteFlag(name string) error {
	if err := transport.ValidateSiteName(name); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// printSite shows the site's links and copies: as its node reports them,
// or, when no node answers, the copies as this client sees them.
func printSite(ctx context.Context, w io.Writer, l *transport.Log) error {
	var r siteReport
	if err := l.Request(ctx, siteStatusSubject(l.Site()), struct{}{}, &r); err != nil {
		if !errors.Is(err, transport.ErrNoService) {
			return err
		}
		r = siteReport{Site: l.Site(), Stream: l.Config().Stream}
		if r.Copies, err = l.Copies(ctx); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nsite %s (no node of the site answers: links unknown)\n", r.Site)
	} else {
		fmt.Fprintf(w, "\nsite %s: own log %s, %d events; server %s; other sites link with --peer %s\n", r.Site, r.Stream, r.Events, r.Server, r.Gateway)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "LINK\tSTATE\tINBOUND\tSINCE\tRTT\n")
		for _, k := range r.Links {
			state, since := "down", "-"
			if k.Up {
				state, since = "up", k.Since.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", k.Site, state, k.Inbound, since, orDash(k.RTT))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "COPY OF\tEVENTS\tLAG\tBEHIND\tLAST CONTACT\tORIGIN\tVERIFIED\tERROR\n")
	for _, c := range r.Copies {
		verified := "-"
		if ch, ok := r.Chains[c.Origin]; ok {
			verified = fmt.Sprint("to ", ch.Verified)
			if len(ch.Problems) > 0 {
				verified = "DISAGREES: " + printable(ch.Problems[0])
			}
		}
		contact, origin := "never", "unreachable"
		if c.Contact >= 0 {
			contact = c.Contact.Round(time.Millisecond).String() + " ago"
		}
		if c.OriginReachable {
			origin = fmt.Sprintf("reachable, seq %d", c.OriginSeq)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", c.Origin, c.Events, c.Lag, c.Behind.Round(time.Millisecond), contact, origin, verified, orDash(printable(c.Error)))
	}
	if r.Error != "" {
		fmt.Fprintf(tw, "(%s)\n", printable(r.Error))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
