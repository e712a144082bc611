// Package faultproxy is a TCP proxy on 127.0.0.1 for tests that puts network
// faults between pgreplica and a server: it passes bytes through, resets
// every connection, blackholes them (bytes accepted, nothing forwarded,
// nothing closed: a firewall that dropped its state, a half-open session
// behind a proxy) or stalls them (nothing read, so the sender's buffers
// fill). Only tests import it.
package faultproxy

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// Mode is what the proxy does with the bytes of its connections.
type Mode int

// The modes.
const (
	Pass      Mode = iota // forward both ways
	Blackhole             // read and drop both ways; accept new connections and do the same
	Stall                 // read nothing; accept new connections and do the same
)

// Proxy forwards connections to one target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  Mode
	woke  chan struct{} // closed and replaced when the mode changes
	conns map[*pair]struct{}
	wg    sync.WaitGroup
}

type pair struct {
	client, server net.Conn
	lost           bool // blackholed for good (Forget)
}

// Start listens on a free port of 127.0.0.1 and forwards to target
// ("host:port").
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, woke: make(chan struct{}), conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Port is the port the proxy listens on.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Addr is "127.0.0.1:port".
func (p *Proxy) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port()) }

// Set changes the mode of every connection, current and future.
func (p *Proxy) Set(m Mode) {
	p.mu.Lock()
	p.mode = m
	close(p.woke)
	p.woke = make(chan struct{})
	p.mu.Unlock()
}

// Heal resets every current connection (their bytes were lost while
// blackholed, as behind a firewall that forgot them) and passes new ones.
func (p *Proxy) Heal() {
	p.Reset()
	p.Set(Pass)
}

// Forget blackholes every current connection for good, whatever the mode
// becomes, and lets the mode apply to new ones only: a firewall that lost
// the state of the old sessions while new ones work. A side that closes is
// not told to the other side (its FIN is lost too).
func (p *Proxy) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.lost = true
	}
}

// Reset closes every current connection with a TCP reset.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		reset(c.client)
		reset(c.server)
		delete(p.conns, c)
	}
}

// Conns is the number of open connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening and resets every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Reset()
	p.wg.Wait()
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (p *Proxy) state(c *pair) (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.lost {
		return Blackhole, p.woke
	}
	return p.mode, p.woke
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			reset(client)
			continue
		}
		c := &pair{client: client, server: server}
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, client, server)
		go p.pipe(c, server, client)
	}
}

// pipe copies from src to dst as the mode says, until either side closes.
func (p *Proxy) pipe(c *pair, src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		if mode, _ := p.state(c); mode != Pass {
			// A close is lost in a blackhole: the other side stays open
			// until Reset or Close.
			src.Close()
			return
		}
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.client.Close()
		c.server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		mode, woke := p.state(c)
		if mode == Stall {
			// Read nothing until the mode changes; notice a closed peer.
			select {
			case <-woke:
				continue
			case <-time.After(100 * time.Millisecond):
				if _, ok := p.open(c); !ok {
					return
				}
				continue
			}
		}
		src.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := src.Read(buf)
		if n > 0 {
			if mode, _ := p.state(c); mode == Pass {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
	}
}

func (p *Proxy) open(c *pair) (*pair, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.conns[c]
	return c, ok
}
