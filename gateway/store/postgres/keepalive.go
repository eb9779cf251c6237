package postgres

import (
	"net"
	"strconv"
	"time"
)

// TCP keepalives and user timeout: how a connection finds out that the
// server's host is gone when no TCP reset says so (packets dropped: a
// pulled cable, a failover, a firewall or security group change).
// Keepalives probe an idle connection (a pooled one) and close it after
// keepalives_count unanswered probes; the user timeout (Linux) closes a
// connection whose sent data stays unacknowledged that long (a statement
// sent to a host that is no longer there). The URL may set them with
// libpq's names and units: keepalives (1 or 0), keepalives_idle and
// keepalives_interval (seconds), keepalives_count, tcp_user_timeout
// (milliseconds; 0: the system's, some 15 minutes).
const (
	DefaultKeepaliveIdle     = 15 * time.Second
	DefaultKeepaliveInterval = 5 * time.Second
	DefaultKeepaliveCount    = 3
	DefaultTCPUserTimeout    = 30 * time.Second
)

// keepalive is the sockets' configuration.
type keepalive struct {
	on          bool
	idle, every time.Duration
	count       int
	userTimeout time.Duration
}

// keepaliveSettings reads (and removes from params: they are not the
// server's settings) the URL's keepalive settings over the defaults.
func keepaliveSettings(params map[string]string) (keepalive, error) {
	ka := keepalive{on: true, idle: DefaultKeepaliveIdle, every: DefaultKeepaliveInterval, count: DefaultKeepaliveCount,
		userTimeout: DefaultTCPUserTimeout}
	for _, p := range []struct {
		name string
		unit time.Duration
		dst  *time.Duration
		n    *int
		min  int
		want string
	}{
		{"keepalives_idle", time.Second, &ka.idle, nil, 1, "a whole number of seconds, at least 1"},
		{"keepalives_interval", time.Second, &ka.every, nil, 1, "a whole number of seconds, at least 1"},
		{"keepalives_count", 0, nil, &ka.count, 1, "a whole number of probes, at least 1"},
		{"tcp_user_timeout", time.Millisecond, &ka.userTimeout, nil, 0, "a whole number of milliseconds (0: the system's)"},
	} {
		v, ok := params[p.name]
		if !ok {
			continue
		}
		delete(params, p.name)
		n, err := strconv.Atoi(v)
		if err != nil || n < p.min {
			return ka, invalidSetting(p.name, "want "+p.want)
		}
		if p.n != nil {
			*p.n = n
		} else {
			*p.dst = time.Duration(n) * p.unit
		}
	}
	if v, ok := params["keepalives"]; ok {
		delete(params, "keepalives")
		switch v {
		case "1":
		case "0":
			ka.on = false
		default:
			return ka, invalidSetting("keepalives", "want 1 or 0")
		}
	}
	return ka, nil
}

// dialer is the TCP dialer of every connection: bounded by connect, with
// the keepalives and the user timeout.
func (ka keepalive) dialer(connect time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: connect}
	if ka.on {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: ka.idle, Interval: ka.every, Count: ka.count}
	} else {
		d.KeepAlive = -1
	}
	if ka.userTimeout > 0 {
		d.Control = userTimeout(ka.userTimeout)
	}
	return d
}
