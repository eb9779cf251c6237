// Package blackhole is a TCP proxy for tests that can stop forwarding
// without closing anything: a database host that vanished without a TCP
// reset (a pulled cable, a failover, a firewall change) as its clients
// see it. While blackholed it still accepts connections and takes what
// the clients send, but forwards nothing either way and answers nothing;
// when it forwards again, what it held is delivered (as TCP would
// retransmit it) and new connections reach the server.
package blackhole

import (
	"net"
	"sync"
)

// Proxy forwards TCP connections to one address. The zero value is not
// usable: see Start.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	forward chan struct{} // closed while forwarding
	conns   map[net.Conn]bool
	done    chan struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Start listens on 127.0.0.1 (any port) and forwards each connection to
// target.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, forward: make(chan struct{}), conns: map[net.Conn]bool{}, done: make(chan struct{})}
	close(p.forward)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding: connections are accepted and held, data is
// taken but neither forwarded nor answered.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.forward:
		p.forward = make(chan struct{})
	default:
	}
}

// Forward forwards again, the data held included.
func (p *Proxy) Forward() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.forward:
	default:
		close(p.forward)
	}
}

// Close stops listening, closes every connection and waits for its
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// wait blocks until the proxy forwards; false when it is closed.
func (p *Proxy) wait() bool {
	p.mu.Lock()
	fwd := p.forward
	p.mu.Unlock()
	select {
	case <-fwd:
		return true
	case <-p.done:
		return false
	}
}

// track registers c to be closed by Close; false when closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects c to the target once the proxy forwards, then copies
// both ways.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	// Held, not refused, while blackholed: what the client sends waits in
	// the socket's buffers.
	if !p.wait() {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer up.Close()
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); p.copy(up, c) }()
	go func() { defer copies.Done(); p.copy(c, up) }()
	copies.Wait()
}

// copy forwards src to dst, holding what it read while blackholed.
func (p *Proxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
