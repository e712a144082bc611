// Package config defines pgreplica's configuration: the replication set, its
// origin and replicas, which tables to replicate and the engine's limits.
//
// A Config comes from a YAML file (Load) or from command-line flags
// (FromFlags). Both start from Default, and both end with Validate, so a
// Config handed to the engine is complete and valid. The package is pure: it
// reads the file it is asked to read and nothing else, has no package state,
// and never prints. Passwords in DSNs never appear in its error messages; use
// Redact or Describe to show a DSN.
package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is one replication set: an origin, the replicas it feeds, and the
// tables that go from one to the others.
type Config struct {
	Name         string        `yaml:"name"`          // replication set name
	Origin       Endpoint      `yaml:"origin"`        // where changes are captured
	Replicas     []Replica     `yaml:"replicas"`      // where they are applied; see RequireReplicas
	Tables       Tables        `yaml:"tables"`        // which tables are replicated
	PollInterval time.Duration `yaml:"poll_interval"` // how often to look for events when no NOTIFY arrives
	Batch        Batch         `yaml:"batch"`         // limits of one replica transaction
	Purge        Purge         `yaml:"purge"`         // removal of applied events from the origin's log
	Control      Control       `yaml:"control"`       // the daemon's control endpoint
	Alerts       Alerts        `yaml:"alerts"`        // e-mail and webhook alerts (alerts.go)
	Metrics      Metrics       `yaml:"metrics"`       // Prometheus and health endpoint
	Timeouts     Timeouts      `yaml:"timeouts"`      // deadlines that keep a dead network path from hanging anything
	Serve        Serve         `yaml:"serve"`         // the TUI served over SSH; see serve.go
	DDL          DDL           `yaml:"ddl"`           // schema changes made with plain SQL on the origin
	// Nodes make a multi-master set (nodes.go): every node captures and
	// applies every other node's changes. Exclusive with Origin and Replicas.
	Nodes []Node `yaml:"nodes"`
	// Conflicts is a multi-master set's conflict resolution.
	Conflicts Conflicts `yaml:"conflicts"`
	// SkipRoles are roles whose writes are not captured (PyReplica's
	// SKIP_USER): compiled into the capture triggers by install.
	SkipRoles []string `yaml:"skip_roles"`
	Path      string   `yaml:"-"` // file it was loaded from, "" when built from flags
	// Source is, on a direction of a multi-master set (Directions), the
	// node whose changes it carries; "" on a one-way set.
	Source string `yaml:"-"`
}

// DDL is what happens to a schema change made with plain SQL (not
// pgreplica execute) on a captured table of the origin.
type DDL struct {
	// Capture: the event trigger (installed by a superuser) also writes
	// each such ALTER TABLE into the log, so that every replica runs it
	// between the right changes, as pgreplica execute does.
	Capture bool `yaml:"capture"`
}

// Endpoint is a database to connect to.
type Endpoint struct {
	DSN string `yaml:"dsn"` // libpq key/value string or postgres:// URL
}

// Replica is a database that receives the set's changes: through a
// connection (DSN), or, with File, through bundle files that
// `pgreplica export` writes and `pgreplica import` applies where the origin
// cannot be reached.
type Replica struct {
	Name string `yaml:"name"`           // unique within the set, same rules as the set name
	DSN  string `yaml:"dsn"`            // libpq key/value string or postgres:// URL
	File bool   `yaml:"file,omitempty"` // a file replica: no DSN, fed by bundles
	// Protect fences the replicated tables on the replica: writes from any
	// session but pgreplica's apply session are refused (Slony-I's
	// deny-access triggers), with an error that names the origin.
	Protect bool `yaml:"protect,omitempty"`
	// Tables are this replica's rules (rules.go): row filter, columns and
	// column names per origin table. Tables without a rule travel whole.
	Tables []TableRule `yaml:"tables,omitempty"`
}

// Tables selects tables by schema.table glob patterns.
type Tables struct {
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
}

// Batch limits how much one replica transaction applies.
type Batch struct {
	MaxEvents int   `yaml:"max_events"`
	MaxBytes  int64 `yaml:"max_bytes"`
}

// Purge controls the removal of events that every replica has applied.
type Purge struct {
	Interval time.Duration `yaml:"interval"` // 0 disables periodic purging
}

// Control is the daemon's control endpoint.
type Control struct {
	Socket string `yaml:"socket"` // unix socket path; "" turns the endpoint off
}

// Timeouts bound how long anything waits on a server. A dead network path
// (a blackholing firewall, a half-open session behind a proxy) is noticed
// within DeadPath; a crashed daemon's apply session that still holds the
// replica is ended after OrphanGrace.
type Timeouts struct {
	Connect     time.Duration `yaml:"connect"`      // connect_timeout, unless the DSN sets its own
	DeadPath    time.Duration `yaml:"dead_path"`    // a connection that answers nothing for this long is dropped
	OrphanGrace time.Duration `yaml:"orphan_grace"` // an earlier apply session idle this long is ended
}

// Default values, also documented in configs/example.yaml.
const (
	DefaultName          = "default"
	DefaultPollInterval  = 2 * time.Second
	DefaultBatchEvents   = 5000
	DefaultBatchBytes    = 16 << 20
	DefaultPurgeInterval = time.Minute
	DefaultInclude       = "*.*"
	DefaultConnect       = 10 * time.Second
	DefaultDeadPath      = 30 * time.Second
	DefaultOrphanGrace   = 30 * time.Second
)

// Lower bounds: below them a setting costs the servers more than it buys.
const (
	MinPollInterval  = 10 * time.Millisecond
	MinPurgeInterval = time.Second
	MinConnect       = 100 * time.Millisecond
	MinDeadPath      = time.Second
	MinOrphanGrace   = time.Second
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Default returns a Config with every default set and no databases.
func Default() Config {
	return Config{
		Name:         DefaultName,
		Tables:       Tables{Include: []string{DefaultInclude}},
		PollInterval: DefaultPollInterval,
		Batch:        Batch{MaxEvents: DefaultBatchEvents, MaxBytes: DefaultBatchBytes},
		Purge:        Purge{Interval: DefaultPurgeInterval},
		Alerts:       defaultAlerts(),
		Timeouts:     Timeouts{Connect: DefaultConnect, DeadPath: DefaultDeadPath, OrphanGrace: DefaultOrphanGrace},
		Serve:        defaultServe(),
	}
}

// FromFlags builds a Config for a quick start without a config file: the
// defaults, the set name (DefaultName when empty), the origin DSN and the
// replica DSNs, named "replica", "replica2", "replica3"... in order.
func FromFlags(name, origin string, replicas []string) (*Config, error) {
	c := Default()
	if name != "" {
		c.Name = name
	}
	c.Origin.DSN = origin
	for i, dsn := range replicas {
		c.Replicas = append(c.Replicas, Replica{Name: flagReplicaName(i), DSN: dsn})
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func flagReplicaName(i int) string {
	if i == 0 {
		return "replica"
	}
	return fmt.Sprintf("replica%d", i+1)
}

// Validate checks every field and reports all problems at once, joined with
// errors.Join, one "field: problem (got value)" line each. It does not require
// a replica: commands that replicate call RequireReplicas as well.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, errors.New(p.String()))
	}
	return errors.Join(errs...)
}

// RequireReplicas reports an error when no replica is configured.
func (c *Config) RequireReplicas() error {
	if len(c.Replicas) > 0 || len(c.Nodes) > 0 {
		return nil
	}
	where := c.Path
	if where == "" {
		where = "a config file"
	}
	return fmt.Errorf("no replicas configured: add one under replicas: in %s, or pass --replica DSN", where)
}

// Replica returns the replica called name.
func (c *Config) Replica(name string) (Replica, error) {
	var names []string
	for _, r := range c.Replicas {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	if len(names) == 0 {
		return Replica{}, fmt.Errorf("unknown replica %q: no replicas configured", name)
	}
	return Replica{}, fmt.Errorf("unknown replica %q (known: %s)", name, strings.Join(names, ", "))
}

// problem is one thing wrong with a field, such as "replicas[0].dsn".
type problem struct {
	field string
	msg   string
}

func (p problem) String() string { return p.field + ": " + p.msg }

// problems lists what is wrong with c, in field order.
func (c *Config) problems() []problem {
	var ps []problem
	add := func(field, format string, args ...any) {
		ps = append(ps, problem{field: field, msg: fmt.Sprintf(format, args...)})
	}

	if !validName(c.Name) {
		add("name", nameRule+" (got %q)", c.Name)
	}

	if len(c.Nodes) > 0 {
		c.nodeProblems(add)
	} else if msg := dsnProblem(c.Origin.DSN); msg != "" {
		add("origin.dsn", "%s", msg)
	}

	firstUse := map[string]int{}
	for i, r := range c.Replicas {
		field := fmt.Sprintf("replicas[%d]", i)
		switch first, seen := firstUse[r.Name]; {
		case r.Name == "":
			add(field+".name", "missing")
		case !validName(r.Name):
			add(field+".name", nameRule+" (got %q)", r.Name)
		case seen:
			add(field+".name", "duplicate, already used by replicas[%d] (got %q)", first, r.Name)
		default:
			firstUse[r.Name] = i
		}
		if r.File {
			if strings.TrimSpace(r.DSN) != "" {
				add(field+".dsn", "a file replica (file: true) has no dsn: it is fed by bundle files; remove one of the two")
			}
			if r.Protect {
				add(field+".protect", "a file replica is fenced by nobody: install reaches it only through bundles; remove protect")
			}
		} else if msg := dsnProblem(r.DSN); msg != "" {
			add(field+".dsn", "%s", msg)
		} else if r.DSN == c.Origin.DSN {
			add(field+".dsn", "same as origin.dsn: a database cannot replicate into itself")
		}
		r.ruleProblems(i, add)
	}

	seenRole := map[string]int{}
	for i, r := range c.SkipRoles {
		field := fmt.Sprintf("skip_roles[%d]", i)
		first, seen := seenRole[r]
		switch {
		case strings.TrimSpace(r) == "":
			add(field, "empty role name")
		case len(r) > 63:
			add(field, "a role name has at most 63 bytes (got %d)", len(r))
		case seen:
			add(field, "duplicate, already listed as skip_roles[%d] (got %q)", first, r)
		default:
			seenRole[r] = i
		}
	}

	if len(c.Tables.Include) == 0 {
		add("tables.include", "empty, so no table would be replicated (use %q for every table)", DefaultInclude)
	}
	for i, p := range c.Tables.Include {
		if msg := patternProblem(p); msg != "" {
			add(fmt.Sprintf("tables.include[%d]", i), "%s", msg)
		}
	}
	for i, p := range c.Tables.Exclude {
		if msg := patternProblem(p); msg != "" {
			add(fmt.Sprintf("tables.exclude[%d]", i), "%s", msg)
		}
	}

	if c.PollInterval < MinPollInterval {
		add("poll_interval", "must be at least %s (got %s)", MinPollInterval, c.PollInterval)
	}
	if c.Batch.MaxEvents <= 0 {
		add("batch.max_events", "must be positive (got %d)", c.Batch.MaxEvents)
	}
	if c.Batch.MaxBytes <= 0 {
		add("batch.max_bytes", "must be positive (got %d)", c.Batch.MaxBytes)
	}
	if c.Purge.Interval < 0 || c.Purge.Interval > 0 && c.Purge.Interval < MinPurgeInterval {
		add("purge.interval", "must be at least %s, or 0 to turn periodic purging off (got %s)", MinPurgeInterval, c.Purge.Interval)
	}
	if c.Timeouts.Connect < MinConnect {
		add("timeouts.connect", "must be at least %s (got %s)", MinConnect, c.Timeouts.Connect)
	}
	if c.Timeouts.DeadPath < MinDeadPath {
		add("timeouts.dead_path", "must be at least %s (got %s)", MinDeadPath, c.Timeouts.DeadPath)
	}
	if c.Timeouts.OrphanGrace < MinOrphanGrace {
		add("timeouts.orphan_grace", "must be at least %s (got %s)", MinOrphanGrace, c.Timeouts.OrphanGrace)
	}
	if len(c.Control.Socket) > maxSocketPath {
		add("control.socket", "too long for a unix socket path, at most %d bytes (got %d bytes)", maxSocketPath, len(c.Control.Socket))
	}
	c.alertProblems(add)
	c.conflictProblems(add)
	c.Serve.problems(add)
	return ps
}

const nameRule = "must be 1-63 characters of a-z, 0-9 and _, not starting with a digit"

// validName reports whether s matches ^[a-z_][a-z0-9_]{0,62}$, the rule for
// set and replica names (they end up in PostgreSQL names and file names).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := b >= 'a' && b <= 'z' || b == '_' || i > 0 && b >= '0' && b <= '9'
		if !ok {
			return false
		}
	}
	return true
}
