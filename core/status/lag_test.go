package status

import (
	"testing"
	"time"
)

func TestLagAtAndHealthy(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		r       Replica
		lag     time.Duration
		ok      bool
		healthy bool
		why     string
	}{
		{"heartbeat on an idle origin", Replica{Name: "r", State: Streaming, Live: true, CaughtUpAt: now.Add(-time.Second), Stored: true},
			time.Second, true, true, ""},
		{"stopped: the heartbeat ages", Replica{Name: "r", State: Stopped, Err: "duplicate key", Live: true, CaughtUpAt: now.Add(-5 * time.Minute)},
			5 * time.Minute, true, false, "stopped: duplicate key"},
		{"before the first heartbeat: the last apply", Replica{State: Retrying, Live: true, LastApplied: now.Add(-time.Hour)},
			time.Hour, true, false, "retrying"},
		{"the oldest pending event when older", Replica{State: Catchup, Live: true, CaughtUpAt: now.Add(-time.Second), Stored: true, Lag: time.Minute},
			time.Minute, true, false, "lag 1m0s over 30s"},
		{"no engine: the databases' count", Replica{State: CaughtUp, Stored: true}, 0, true, true, ""},
		{"nothing known", Replica{}, 0, false, false, "state not known yet"},
	}
	for _, tt := range tests {
		lag, ok := tt.r.LagAt(now)
		healthy, why := tt.r.Healthy(now, 30*time.Second)
		if lag != tt.lag || ok != tt.ok || healthy != tt.healthy || why != tt.why {
			t.Errorf("%s: LagAt = %v %v, Healthy = %v %q; want %v %v, %v %q", tt.name, lag, ok, healthy, why, tt.lag, tt.ok, tt.healthy, tt.why)
		}
	}
}
