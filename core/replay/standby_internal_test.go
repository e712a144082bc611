package replay

import (
	"fmt"
	"testing"
	"time"
)

func TestOrphanRule(t *testing.T) {
	const grace = 30 * time.Second
	cases := []struct {
		h    lockHolder
		want bool
	}{
		{lockHolder{App: "pgreplica apply shop", State: "idle in transaction", IdleFor: 31 * time.Second}, true},
		{lockHolder{App: "pgreplica apply shop", State: "idle", IdleFor: 30 * time.Second}, true},
		{lockHolder{App: "pgreplica apply shop", State: "idle", IdleFor: 29 * time.Second}, false}, // a live engine polls
		{lockHolder{App: "pgreplica apply shop", State: "active", IdleFor: time.Hour}, false},      // working
		{lockHolder{App: "pgreplica apply other", State: "idle", IdleFor: time.Hour}, false},       // another set
		{lockHolder{App: "psql", State: "idle in transaction", IdleFor: time.Hour}, false},         // not ours to end
		{lockHolder{App: "pgreplica apply shop", State: "", IdleFor: time.Hour}, false},            // state unknown
	}
	for _, c := range cases {
		if got := c.h.orphan("shop", grace); got != c.want {
			t.Errorf("%+v: orphan = %v, want %v", c.h, got, c.want)
		}
	}
}

// Faults are retried within a second (a connect attempt is cheap); errors
// that need the operator back off to 30s.
func TestBackoff(t *testing.T) {
	var fault, stop []time.Duration
	var f, s time.Duration
	for i := 0; i < 8; i++ {
		f, s = nextBackoff(f, false), nextBackoff(s, true)
		fault, stop = append(fault, f), append(stop, s)
	}
	if got := fmt.Sprint(fault); got != "[500ms 1s 1s 1s 1s 1s 1s 1s]" {
		t.Errorf("fault backoff %s", got)
	}
	if got := fmt.Sprint(stop); got != "[500ms 1s 2s 4s 8s 16s 30s 30s]" {
		t.Errorf("stop backoff %s", got)
	}
}

func TestLockHolderText(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	h := lockHolder{PID: 42, App: "pgreplica apply shop", State: "idle in transaction", Since: at, Connected: at, Client: "10.0.0.9"}
	if got := h.String(); got != "pid 42 (pgreplica apply shop from 10.0.0.9, connected 2026-12-01T08:00:00Z, idle in transaction since 2026-12-01T08:00:00Z)" {
		t.Errorf("holder: %s", got)
	}
	hidden := lockHolder{PID: 43}
	if got := hidden.String(); got != "pid 43 (its state is hidden from this role: run every daemon of the set as one role, or grant pg_read_all_stats and pg_signal_backend)" {
		t.Errorf("hidden holder: %s", got)
	}
}
