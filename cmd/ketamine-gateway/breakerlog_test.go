package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
)

// TestServeLogsBreaker: the PostgreSQL store serve opens logs its
// circuit breaker's WARN lines to serve's logger, as docs/deployment.md
// promises (a review found none: openStore gave the store no logger).
// The database goes away behind a proxy that then refuses connections.
func TestServeLogsBreaker(t *testing.T) {
	dsn, _ := pgtest.Schema(t, "kgb", "the circuit breaker's log lines")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	u.Host = p.addr
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx := context.Background()
	st, err := openStore(ctx, u.String(), dbCreate, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p.close()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "database circuit breaker open") {
		if time.Now().After(deadline) {
			t.Fatalf("no breaker line was logged:\n%s", logs.String())
		}
		_, _ = st.Read(ctx, "Patient", "x") // fails: the database is gone
		if err := st.Ping(ctx); store.UnavailableCause(err) == store.CauseCircuitOpen {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if pu, _ := url.Parse(dsn); pu.User != nil && strings.Contains(logs.String(), pu.User.String()) {
		t.Errorf("the log names the URL's userinfo:\n%s", logs.String())
	}
}

// proxy forwards TCP connections to a target until closed; closed, it
// refuses new connections and cuts the open ones.
type proxy struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	once  sync.Once
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(p.close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(d, c); d.Close() }()
			go func() { _, _ = io.Copy(c, d); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) close() {
	p.once.Do(func() {
		p.ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
}
