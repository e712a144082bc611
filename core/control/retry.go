package control

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// addRetry adds POST /retry?replica=NAME: the replica's worker retries at
// once instead of waiting for the end of its backoff.
func addRetry(mux *http.ServeMux, src Source) {
	mux.HandleFunc("POST /retry", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("replica")
		if !src.Engine.Retry(name) {
			http.Error(w, fmt.Sprintf("unknown replica %q", name), http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]string{"replica": name, "retry": "asked"})
	})
}

// Retry asks the daemon to retry replica now.
func (c *Client) Retry(ctx context.Context, replica string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://pgreplica/retry?replica="+url.QueryEscape(replica), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("daemon at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var buf [200]byte
		n, _ := resp.Body.Read(buf[:])
		return fmt.Errorf("daemon at %s: %s: %s", c.path, resp.Status, strings.TrimSpace(string(buf[:n])))
	}
	return nil
}
