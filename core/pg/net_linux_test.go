package pg

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A server that accepts the connection and never answers (a blackholed
// path) makes the connect fail within the default connect timeout; a DSN's
// own connect_timeout wins over the default.
func TestConnectTimesOutOnASilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dsn := "host=127.0.0.1 sslmode=disable user=x dbname=x port=" + itoa(port)

	start := time.Now()
	_, err = ConnectNet(context.Background(), "origin", dsn, "test", Net{ConnectTimeout: 500 * time.Millisecond, DeadPath: 3 * time.Second})
	took := time.Since(start)
	if err == nil || !strings.HasPrefix(err.Error(), "connect to origin (x@127.0.0.1:"+itoa(port)+"/x): ") {
		t.Fatalf("connect to a silent server: %v", err)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Fatalf("connect gave up after %v, want about 500ms", took)
	}

	start = time.Now()
	_, err = ConnectNet(context.Background(), "origin", dsn+" connect_timeout=1", "test", Net{ConnectTimeout: 100 * time.Millisecond, DeadPath: 3 * time.Second})
	if took := time.Since(start); err == nil || took < 900*time.Millisecond || took > 4*time.Second {
		t.Fatalf("with connect_timeout=1 in the DSN: gave up after %v (%v), want about 1s", took, err)
	}
}

// The dialer sets tcp_user_timeout to DeadPath and enables keepalives.
func TestDialerSetsUserTimeoutAndKeepalive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	n := Net{ConnectTimeout: time.Second, DeadPath: 9 * time.Second}
	c, err := n.Dialer(time.Second).DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, keepalive, idle, intvl, cnt int
	raw.Control(func(fd uintptr) {
		userTimeout, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		keepalive, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	})
	if userTimeout != 9000 || keepalive != 1 || idle != 3 || intvl != 1 || cnt != 3 {
		t.Fatalf("tcp_user_timeout %d ms, keepalive %d idle %ds interval %ds count %d; want 9000, 1, 3, 1, 3",
			userTimeout, keepalive, idle, intvl, cnt)
	}
	if got := n.ServerKeepalives(); got != "SET tcp_keepalives_idle = 3; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3; SET tcp_user_timeout = 9000" {
		t.Fatalf("server keepalives: %s", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
