// Package metrics serves a running engine's Prometheus metrics
// (pgreplica_*), /healthz and /readyz over HTTP (metrics.listen). Every
// value comes from core/status, the one model of replica states: the
// engine's live status, merged with what the databases say (read at most
// once a second, when scraped).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// Listen opens the metrics address; an address in use is an error that
// names it.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	return l, nil
}

// Engine is what the endpoint needs of a running engine.
type Engine interface {
	Status() []replay.ReplicaStatus
}

// Metrics is one engine's metrics. OnEvent counts the engine's events;
// the rest is read when scraped.
type Metrics struct {
	cfg     *config.Config
	eng     Engine
	log     *slog.Logger
	reg     *prometheus.Registry
	applied *prometheus.CounterVec
	batches *prometheus.CounterVec
	errs    *prometheus.CounterVec
	confl   *prometheus.CounterVec

	mu       sync.Mutex
	readAt   time.Time
	report   *replay.Report
	tables   []capture.TableInfo
	originUp bool
	// MinRead is the shortest time between two reads of the databases.
	MinRead time.Duration
}

// New makes the metrics of an engine running cfg.
func New(cfg *config.Config, eng Engine, log *slog.Logger) *Metrics {
	m := &Metrics{cfg: cfg, eng: eng, log: log, reg: prometheus.NewRegistry(), MinRead: time.Second}
	labels := []string{"set", "replica"}
	m.applied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgreplica_replica_applied_events_total",
		Help: "Events applied to the replica by this engine."}, labels)
	m.batches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgreplica_replica_applied_batches_total",
		Help: "Replica transactions (batches) committed by this engine."}, labels)
	m.errs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgreplica_replica_apply_errors_total",
		Help: "Times the replica's worker went from working to retrying or stopped."}, labels)
	m.confl = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgreplica_replica_conflicts_total",
		Help: "Conflicts found on the replica by this engine, by kind."}, []string{"set", "replica", "kind"})
	for _, r := range cfg.Connected() {
		m.applied.WithLabelValues(cfg.Name, r.Name)
		m.batches.WithLabelValues(cfg.Name, r.Name)
		m.errs.WithLabelValues(cfg.Name, r.Name)
		for _, k := range []string{replay.UpdateNoRow, replay.DeleteNoRow} {
			m.confl.WithLabelValues(cfg.Name, r.Name, k)
		}
	}
	m.reg.MustRegister(m.applied, m.batches, m.errs, m.confl, collector{m})
	return m
}

// OnEvent counts an engine event; it never blocks.
func (m *Metrics) OnEvent(ev replay.Event) {
	switch e := ev.(type) {
	case replay.BatchApplied:
		if e.Events > 0 {
			m.applied.WithLabelValues(m.cfg.Name, e.Replica).Add(float64(e.Events))
			m.batches.WithLabelValues(m.cfg.Name, e.Replica).Inc()
		}
	case replay.StateChanged:
		if (e.To == replay.Retrying || e.To == replay.Stopped) && e.From != replay.Retrying && e.From != replay.Stopped {
			m.errs.WithLabelValues(m.cfg.Name, e.Replica).Inc()
		}
	case replay.ConflictFound:
		m.confl.WithLabelValues(m.cfg.Name, e.Replica, e.Conflict.Kind).Inc()
	}
}

// Replicas is the one model of the replicas now: the engine's status,
// with the databases' report when withStored.
func (m *Metrics) Replicas(ctx context.Context, withStored bool) []status.Replica {
	var rep *replay.Report
	if withStored {
		rep = m.read(ctx)
	}
	return status.Merge(m.names(), rep, &status.Live{Running: true, Replicas: m.eng.Status()})
}

func (m *Metrics) names() []string {
	var out []string
	for _, r := range m.cfg.Connected() { // file replicas are fed by bundles, not by this engine
		out = append(out, r.Name)
	}
	return out
}

// read returns the databases' report, read again when older than MinRead.
func (m *Metrics) read(ctx context.Context) *replay.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.readAt) < m.MinRead {
		return m.report
	}
	m.readAt = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := replay.QueryStatus(ctx, m.cfg)
	m.originUp = err == nil
	if err != nil {
		m.log.Warn("metrics: read status", "err", err.Error())
		m.report = nil
		return nil
	}
	m.report = &rep
	if conn, err := pg.ConnectOrigin(ctx, m.cfg, "metrics "+m.cfg.Name); err == nil {
		if ts, err := capture.ListTables(ctx, conn, m.cfg.Tables.Match); err == nil {
			m.tables = ts
		}
		conn.Close(context.WithoutCancel(ctx))
	}
	return m.report
}

// The states a replica's pgreplica_replica_state takes.
var states = []status.State{status.Starting, status.Streaming, status.Catchup, status.Retrying, status.Stopped, status.Standby, status.File,
	status.Unreachable, status.Error}

var (
	descLag = prometheus.NewDesc("pgreplica_replica_lag_seconds",
		"How far the replica is behind the origin: the age of the origin snapshot it last fully applied (a heartbeat: right on an idle origin, growing while the replica is stopped or unreachable).",
		[]string{"set", "replica"}, nil)
	descPending = prometheus.NewDesc("pgreplica_replica_pending_events",
		"Events captured on the origin and not yet applied to the replica.", []string{"set", "replica"}, nil)
	descState = prometheus.NewDesc("pgreplica_replica_state",
		"1 for the replica's current state, 0 for the others.", []string{"set", "replica", "state"}, nil)
	descLast = prometheus.NewDesc("pgreplica_replica_last_apply_timestamp_seconds",
		"When the replica last applied a batch (Unix time).", []string{"set", "replica"}, nil)
	descRecorded = prometheus.NewDesc("pgreplica_replica_conflicts_recorded",
		"Rows in pgreplica.conflict on the replica.", []string{"set", "replica"}, nil)
	descLog = prometheus.NewDesc("pgreplica_origin_log_events",
		"Events in the origin's log (applied or not).", []string{"set"}, nil)
	descUp = prometheus.NewDesc("pgreplica_origin_up",
		"1 when the origin's status could be read at the last scrape.", []string{"set"}, nil)
	descTable = prometheus.NewDesc("pgreplica_table_capture",
		"1 for each origin table's capture status (installed, missing, no primary key, disabled).",
		[]string{"set", "table", "status"}, nil)
)

// collector reads the model at scrape time.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLag, descPending, descState, descLast, descRecorded, descLog, descUp, descTable} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	now := time.Now()
	reps := m.Replicas(context.Background(), true)
	set := m.cfg.Name
	for _, r := range reps {
		if lag, ok := r.LagAt(now); ok {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, lag.Seconds(), set, r.Name)
		}
		if r.Stored {
			ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(r.Pending), set, r.Name)
			ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.GaugeValue, float64(r.Conflicts), set, r.Name)
		}
		for _, s := range states {
			v := 0.0
			if r.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, set, r.Name, string(s))
		}
		if !r.LastApplied.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(r.LastApplied.UnixMilli())/1000, set, r.Name)
		}
	}
	m.mu.Lock()
	rep, up, tables := m.report, m.originUp, m.tables
	m.mu.Unlock()
	upv := 0.0
	if up {
		upv = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, upv, set)
	if rep != nil {
		ch <- prometheus.MustNewConstMetric(descLog, prometheus.GaugeValue, float64(rep.LogEvents), set)
	}
	for _, t := range tables {
		ch <- prometheus.MustNewConstMetric(descTable, prometheus.GaugeValue, 1, set, t.Table.String(), string(t.Status))
	}
}

// Ready reports whether every replica streams or catches up within
// lagOver (0: any lag), and the reasons when not, one line per replica.
func (m *Metrics) Ready(lagOver time.Duration) (bool, string) {
	now := time.Now()
	var why []string
	for _, r := range m.Replicas(context.Background(), false) {
		if ok, reason := r.Healthy(now, lagOver); !ok {
			why = append(why, fmt.Sprintf("replica %s: %s", r.Name, reason))
		}
	}
	return len(why) == 0, strings.Join(why, "\n")
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := m.Ready(m.cfg.Alerts.LagOver)
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve serves the handler on l until ctx ends.
func (m *Metrics) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
