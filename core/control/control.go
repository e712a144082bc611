// Package control is the daemon's local control endpoint: HTTP over a unix
// socket (mode 0600) that serves the running engine's status and its recent
// log, so that the TUI or `pgreplica status` can attach to a daemon started
// by systemd. It is off unless control.socket is configured.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"pgreplica/core/logring"
	"pgreplica/core/replay"
)

// Status is what GET /status returns.
type Status struct {
	Set      string                 `json:"set"`
	PID      int                    `json:"pid"`
	Started  time.Time              `json:"started"`
	Replicas []replay.ReplicaStatus `json:"replicas"`
}

// Source is what the endpoint serves: the running engine and its log.
type Source struct {
	Set    string
	Engine *replay.Engine
	Log    *logring.Ring
}

// Serve listens on the unix socket path until ctx is cancelled. A stale
// socket left by a crashed daemon is replaced; a live one is an error, and
// so is anything else at path (a file, a directory), which is left as it is.
// The socket is created with mode 0600 (no window where the umask's mode
// applies).
func Serve(ctx context.Context, path string, src Source) error {
	if err := removeStale(path); err != nil {
		return err
	}
	lc := net.ListenConfig{Control: privateSocket}
	l, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, Status{Set: src.Set, PID: os.Getpid(), Started: src.Engine.Started(), Replicas: src.Engine.Status()})
	})
	mux.HandleFunc("GET /logs", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		// Long poll: wait up to 10s for something newer than since.
		if src.Log.Last() <= since {
			select {
			case <-src.Log.Changed():
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		writeJSON(w, src.Log.Since(since, 1000))
	})
	addRetry(mux, src)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	err = srv.Serve(l)
	os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Check reports, before a daemon starts, what would keep it from serving at
// path: something that is not a socket there, or a live daemon's socket.
func Check(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && fi.Mode().Type() != fs.ModeSocket {
		return removeStale(path) // refuses, removes nothing
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another pgreplica daemon is listening there", path)
	}
	return nil
}

// removeStale removes a socket at path that nobody listens on. Anything
// else there is refused and left intact.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		what := "a file"
		switch {
		case fi.IsDir():
			what = "a directory"
		case fi.Mode().Type() == fs.ModeSymlink:
			what = "a symbolic link"
		case !fi.Mode().IsRegular():
			what = "a special file"
		}
		return fmt.Errorf("control socket %s: %s is there, not a socket; refusing to replace it (set control.socket to a path of its own)", path, what)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another pgreplica daemon is listening there", path)
	}
	return os.Remove(path)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Client talks to a daemon's control endpoint.
type Client struct {
	path string
	http *http.Client
}

// Dial returns a client for the socket at path (it connects per request).
func Dial(path string) *Client {
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

// Status fetches the daemon's engine status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, "/status", &s)
}

// Logs fetches log records newer than since, waiting up to 10s for one.
func (c *Client) Logs(ctx context.Context, since uint64) ([]logring.Record, error) {
	var recs []logring.Record
	return recs, c.get(ctx, "/logs?since="+strconv.FormatUint(since, 10), &recs)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pgreplica"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("daemon at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon at %s: %s", c.path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("daemon at %s: %w", c.path, err)
	}
	return nil
}
