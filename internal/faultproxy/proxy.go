// Package faultproxy is a loopback TCP proxy for tests that need a
// network fault between btfu and a server: it forwards every connection
// to a target address until told to freeze (stop forwarding without
// closing anything, like a path that silently drops packets), to stall
// the connections open now while new ones pass (a route that died under
// them), or to cut (close every connection and refuse new ones, like a
// broken link).
package faultproxy

import (
	"fmt"
	"net"
	"sync"
)

// Proxy forwards connections from a loopback port to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	thawed *sync.Cond // signalled when frozen turns false
	frozen bool
	cut    bool
	conns  map[net.Conn]*link
	closed bool
	wg     sync.WaitGroup
}

// Start listens on 127.0.0.1 (a free port) and forwards to target
// (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]*link{}}
	p.thawed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Freeze stops forwarding bytes in both directions; connections stay
// open and new ones are accepted but get nothing through.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// Thaw resumes forwarding, including what was held while frozen or
// stalled.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	p.frozen = false
	for _, l := range p.conns {
		l.stalled = false
	}
	p.thawed.Broadcast()
	p.mu.Unlock()
}

// Stall stops forwarding on the connections open now, without closing
// them; new connections are forwarded.
func (p *Proxy) Stall() {
	p.mu.Lock()
	for _, l := range p.conns {
		l.stalled = true
	}
	p.mu.Unlock()
}

// link is one proxied connection (both of its sockets).
type link struct{ stalled bool }

// Cut closes every connection and refuses new ones (they are closed as
// soon as accepted) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Restore accepts and forwards connections again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed, p.frozen = true, false
	p.thawed.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.cut || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &link{}
		if !p.track(l, c, up) {
			c.Close()
			up.Close()
			continue
		}
		p.wg.Add(2)
		go p.pipe(l, c, up)
		go p.pipe(l, up, c)
	}
}

func (p *Proxy) track(l *link, conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	for _, c := range conns {
		p.conns[c] = l
	}
	return true
}

// pipe copies from src to dst, waiting while the proxy is frozen or the
// link stalled; when either side ends, both are closed.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for (p.frozen || l.stalled) && !p.closed {
				p.thawed.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
