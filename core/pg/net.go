package pg

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
)

// Net bounds how long a connection may wait on its server, so that a dead
// network path (a firewall that dropped its state, a half-open session
// behind a proxy) ends in an error instead of a hang.
type Net struct {
	// ConnectTimeout is the connect_timeout of a DSN that sets none (nor
	// PGCONNECT_TIMEOUT): it bounds the dial and the whole startup.
	ConnectTimeout time.Duration
	// DeadPath is how long data sent may stay unacknowledged
	// (tcp_user_timeout) and how long an idle connection may stay silent
	// (TCP keepalives: first probe after a third of it, then three probes
	// a ninth apart) before the kernel ends the connection.
	DeadPath time.Duration
}

// Default connection bounds (config's timeouts.connect and dead_path).
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultDeadPath       = 30 * time.Second
)

// DefaultNet is the bounds every connection has unless told otherwise.
func DefaultNet() Net { return Net{ConnectTimeout: DefaultConnectTimeout, DeadPath: DefaultDeadPath} }

// NetOf is the connection bounds of a config (timeouts.connect, dead_path).
func NetOf(cfg *config.Config) Net {
	return Net{ConnectTimeout: cfg.Timeouts.Connect, DeadPath: cfg.Timeouts.DeadPath}
}

// ConnectNet is ConnectAs with the given bounds.
func ConnectNet(ctx context.Context, role, dsn, appName string, n Net) (*pgx.Conn, error) {
	if strings.TrimSpace(dsn) == "" {
		// Never the libpq defaults: a file replica has no DSN, and a
		// connection to whatever local database answers would be wrong.
		return nil, fmt.Errorf("%s: no dsn to connect to (a file replica is fed by bundle files: pgreplica export, then pgreplica import where it runs)", role)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: bad connection string: %s", role, scrub(err.Error(), dsn))
	}
	n.Apply(cfg)
	return connectConfig(ctx, role, cfg, appName)
}

// Apply sets the bounds on a parsed config: a connect timeout where the DSN
// has none, and a dialer with TCP keepalives and tcp_user_timeout. A DSN's
// own connect_timeout wins.
func (n Net) Apply(cfg *pgx.ConnConfig) {
	if n.ConnectTimeout <= 0 {
		n.ConnectTimeout = DefaultConnectTimeout
	}
	if n.DeadPath <= 0 {
		n.DeadPath = DefaultDeadPath
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = n.ConnectTimeout
	}
	d := n.Dialer(cfg.ConnectTimeout)
	cfg.DialFunc = d.DialContext
}

// Dialer is a net.Dialer with the bounds of n: keepalive probes that end an
// idle connection whose peer is gone within two thirds of DeadPath, and
// tcp_user_timeout (Linux) that ends one whose sent data stays
// unacknowledged for DeadPath.
func (n Net) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     n.DeadPath / 3,
			Interval: max(n.DeadPath/9, time.Second),
			Count:    3,
		},
		Control: userTimeout(n.DeadPath),
	}
}

// ServerKeepalives is the SQL that makes the server notice a dead client
// within about DeadPath on TCP connections (ignored on unix sockets):
// keepalive settings and tcp_user_timeout, all settable by any role.
func (n Net) ServerKeepalives() string {
	s := func(d time.Duration) string { return strconv.Itoa(max(int(d/time.Second), 1)) }
	return "SET tcp_keepalives_idle = " + s(n.DeadPath/3) +
		"; SET tcp_keepalives_interval = " + s(n.DeadPath/9) +
		"; SET tcp_keepalives_count = 3" +
		"; SET tcp_user_timeout = " + strconv.Itoa(int(n.DeadPath/time.Millisecond))
}
