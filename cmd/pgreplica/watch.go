package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"pgreplica/core/alert"
	"pgreplica/core/config"
	"pgreplica/core/metrics"
	"pgreplica/core/replay"
	"pgreplica/core/status"
)

// alerting is the daemon's alerter, kept across reloads while the alerts:
// section does not change (so a firing problem does not fire again).
type alerting struct {
	log     *slog.Logger
	cfg     config.Alerts
	set     string
	alerter *alert.Alerter // nil when no channel is configured
}

func newAlerter(cfg *config.Config, log *slog.Logger) (*alert.Alerter, error) {
	if !cfg.Alerts.Enabled() {
		return nil, nil
	}
	chans, err := alert.Channels(cfg.Alerts, os.Getenv("PGREPLICA_SMTP_PASSWORD"))
	if err != nil {
		return nil, err
	}
	rules := alert.Rules{LagOver: cfg.Alerts.LagOver, Repeat: cfg.Alerts.Repeat, Grace: cfg.Alerts.Grace, Group: cfg.Alerts.Group}
	al := alert.New(cfg.Name, chans, rules, log.With("part", "alerts"), alert.Options{MaxPerHour: cfg.Alerts.MaxPerHr,
		Explain: func(ctx context.Context, replica string) string { return explainText(ctx, cfg, replica) }})
	al.Start()
	return al, nil
}

// start makes the alerter of the first config.
func (w *alerting) start(cfg *config.Config) error {
	al, err := newAlerter(cfg, w.log)
	if err != nil {
		return err
	}
	w.cfg, w.set, w.alerter = cfg.Alerts, cfg.Name, al
	if al != nil {
		al.Notify(alert.EngineStarted, "engine started", engineText(cfg))
	}
	return nil
}

// reload replaces the alerter when the alerts: section changed; a new
// one that cannot be made is logged and the running one kept.
func (w *alerting) reload(cfg *config.Config) {
	if reflect.DeepEqual(w.cfg, cfg.Alerts) && w.set == cfg.Name {
		return
	}
	al, err := newAlerter(cfg, w.log)
	if err != nil {
		w.log.Error("alerts: new config refused; keeping the running alerts", "err", err.Error())
		return
	}
	if w.alerter != nil {
		w.alerter.Close(5 * time.Second)
	}
	w.cfg, w.set, w.alerter = cfg.Alerts, cfg.Name, al
}

// stop sends "engine stopped" and delivers what is queued (5s at most).
func (w *alerting) stop() {
	if w.alerter == nil {
		return
	}
	w.alerter.Notify(alert.EngineStopped, "engine stopped", "pgreplica run ended (SIGTERM, SIGINT or an unrecoverable error)")
	w.alerter.Close(5 * time.Second)
}

func engineText(cfg *config.Config) string {
	host, _ := os.Hostname()
	names := replicaNames(cfg)
	return "pgreplica run on " + host + " (pid " + strconv.Itoa(os.Getpid()) + "), replicas: " + strings.Join(names, ", ")
}

// watch runs the alerter's status watch and the metrics endpoint of one
// engine generation until ctx ends. l is the metrics listener, or nil.
func watch(ctx context.Context, cfg *config.Config, eng *replay.Engine, al *alert.Alerter, m *metrics.Metrics, l net.Listener, log *slog.Logger) func() {
	done := make(chan struct{}, 2)
	n := 0
	if al != nil {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			names := replicaNames(cfg)
			al.Run(ctx, func() []status.Replica {
				return status.Merge(names, nil, &status.Live{Running: true, Replicas: eng.Status()})
			})
		}()
	}
	if l != nil {
		n++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := m.Serve(ctx, l); err != nil {
				log.Error("metrics endpoint", "err", err.Error())
			}
		}()
	}
	return func() {
		for range n {
			<-done
		}
	}
}

// replicaNames are the replicas an engine applies (not the file replicas).
func replicaNames(cfg *config.Config) []string {
	var out []string
	for _, r := range cfg.Connected() {
		out = append(out, r.Name)
	}
	return out
}

// onEvents fans the engine's events out; each receiver never blocks.
func onEvents(fs ...func(replay.Event)) func(replay.Event) {
	return func(ev replay.Event) {
		for _, f := range fs {
			if f != nil {
				f(ev)
			}
		}
	}
}

// explainText is what an alert of a stopped replica adds: the failing
// event as `pgreplica why` finds it.
func explainText(ctx context.Context, cfg *config.Config, replica string) string {
	d, err := replay.Diagnose(ctx, cfg, replica, cfg.Batch.MaxEvents)
	if err != nil {
		return "pgreplica why: " + err.Error()
	}
	f := d.Failing
	if f == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "failing event: %d (txid %d), %s on %s, captured %s\n", f.ID, f.Txid, f.Op, f.Table, f.At.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "key:           %s\n", f.Key)
	if f.Data != "" {
		fmt.Fprintf(&b, "data:          %s\n", clipText(f.Data, 2000))
	}
	fmt.Fprintf(&b, "server:        %s", f.Error)
	if f.Detail != "" {
		fmt.Fprintf(&b, " (%s)", strings.TrimSuffix(f.Detail, "."))
	}
	if f.SQLState != "" {
		fmt.Fprintf(&b, " [SQLSTATE %s]", f.SQLState)
	}
	fmt.Fprintf(&b, "\nbehind it:     %d events\nhint:          %s", f.Behind, f.Hint)
	return b.String()
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
