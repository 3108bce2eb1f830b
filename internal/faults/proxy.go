package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Network is the set of TCP proxies in front of a cluster's nodes, and the
// partitions among them. Every connection to a node, from a peer or a
// client, goes through the node's proxies, so that [Network.Partition] can
// cut a node off: its connections are closed and new ones refused until
// [Network.Heal].
//
// A Network is safe for concurrent use.
type Network struct {
	mu       sync.Mutex
	isolated map[string]bool
	conns    map[*proxyConn]struct{}
	proxies  []*Proxy
	closed   bool
	wg       sync.WaitGroup
}

// NewNetwork returns a network with no proxies and no partition.
func NewNetwork() *Network {
	return &Network{isolated: map[string]bool{}, conns: map[*proxyConn]struct{}{}}
}

// Proxy forwards the connections it accepts on a loopback port to one node.
type Proxy struct {
	n      *Network
	node   string // the node behind the proxy
	target string // its address
	route  bool
	ln     net.Listener
}

// ClientProxy starts a proxy on 127.0.0.1:0 for the client port of node
// at target. Clients of the node are cut when the node is isolated.
func (n *Network) ClientProxy(node, target string) (*Proxy, error) {
	return n.listen(node, target, false)
}

// RouteProxy starts a proxy on 127.0.0.1:0 for the route port of node at
// target; the node must advertise the proxy's address as its cluster
// address (nats-server's cluster advertise), so that peers dial the proxy
// whatever route addresses they learn by gossip.
//
// A route connection has the proxy's node at one end, and at the other
// the peer that dialed, which the proxy learns from the INFO line the peer
// sends first thing (its "server_name"). Isolating either end cuts the
// connection. Until the dialer is known, nothing after its INFO line is
// forwarded, so no route forms across a partition.
func (n *Network) RouteProxy(node, target string) (*Proxy, error) {
	return n.listen(node, target, true)
}

func (n *Network) listen(node, target string, route bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faults: proxy for %s: %w", node, err)
	}
	p := &Proxy{n: n, node: node, target: target, route: route, ln: ln}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return nil, errors.New("faults: network closed")
	}
	n.proxies = append(n.proxies, p)
	n.wg.Add(1)
	n.mu.Unlock()
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Partition isolates the named nodes from every other node and from all
// clients: it closes their connections now and refuses new ones until
// Heal. Nodes already isolated stay so.
func (n *Network) Partition(nodes ...string) {
	n.mu.Lock()
	for _, name := range nodes {
		n.isolated[name] = true
	}
	var cut []*proxyConn
	for c := range n.conns {
		if n.cutLocked(c) {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// Heal ends every partition: new connections are accepted again.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.isolated)
	n.mu.Unlock()
}

// Isolated lists the isolated nodes.
func (n *Network) Isolated() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name := range n.isolated {
		out = append(out, name)
	}
	return out
}

// Close stops every proxy and closes every connection through them.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	proxies := n.proxies
	var conns []*proxyConn
	for c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, p := range proxies {
		p.ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
	n.wg.Wait()
}

// cutLocked reports whether c crosses a partition.
func (n *Network) cutLocked(c *proxyConn) bool {
	return n.isolated[c.p.node] || (c.peer != "" && n.isolated[c.peer])
}

// proxyConn is one connection through a proxy: down is the dialer's side,
// up the node's.
type proxyConn struct {
	p        *Proxy
	down, up net.Conn
	peer     string // the node that dialed a route, once known
	once     sync.Once
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.down.Close()
		c.up.Close()
	})
}

func (p *Proxy) accept() {
	defer p.n.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.n.wg.Add(1)
		go p.serve(down)
	}
}

// serve forwards one connection, unless its node is isolated.
func (p *Proxy) serve(down net.Conn) {
	defer p.n.wg.Done()
	n := p.n
	n.mu.Lock()
	refuse := n.closed || n.isolated[p.node]
	n.mu.Unlock()
	if refuse {
		down.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil { // the node is down: the dialer sees the connection close
		down.Close()
		return
	}
	c := &proxyConn{p: p, down: down, up: up}
	n.mu.Lock()
	if n.closed || n.cutLocked(c) {
		n.mu.Unlock()
		c.close()
		return
	}
	n.conns[c] = struct{}{}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}()

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(down, up)
		c.close()
		done <- struct{}{}
	}()
	go func() {
		if p.route {
			p.identify(c)
		}
		_, _ = io.Copy(up, down)
		c.close()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// maxHandshake bounds the bytes scanned for a route dialer's INFO line.
const maxHandshake = 64 << 10

// identify forwards what the dialer of a route sends, line by line, until
// its INFO line names it; it records the name and closes the connection if
// either end is isolated. Anything after the INFO line is left for the
// caller to forward. A dialer that sends no INFO line within maxHandshake
// bytes stays unnamed.
func (p *Proxy) identify(c *proxyConn) {
	var buf []byte
	chunk := make([]byte, 4096)
	for len(buf) < maxHandshake {
		k, err := c.down.Read(chunk)
		if k > 0 {
			buf = append(buf, chunk[:k]...)
			for {
				i := bytes.Index(buf, []byte("\r\n"))
				if i < 0 {
					break
				}
				line := buf[:i+2]
				if name, ok := infoName(line); ok {
					n := p.n
					n.mu.Lock()
					c.peer = name
					cut := n.cutLocked(c)
					n.mu.Unlock()
					if cut {
						c.close()
						return
					}
				}
				if _, err := c.up.Write(line); err != nil {
					c.close()
					return
				}
				buf = buf[i+2:]
				if c.peer != "" {
					if len(buf) > 0 {
						if _, err := c.up.Write(buf); err != nil {
							c.close()
						}
					}
					return
				}
			}
		}
		if err != nil {
			c.close()
			return
		}
	}
	if _, err := c.up.Write(buf); err != nil {
		c.close()
	}
}

// infoName returns the server name of a NATS INFO protocol line.
func infoName(line []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("INFO "))
	if !ok {
		return "", false
	}
	var info struct {
		Name string `json:"server_name"`
	}
	if json.Unmarshal(rest, &info) != nil || info.Name == "" {
		return "", false
	}
	return info.Name, true
}
