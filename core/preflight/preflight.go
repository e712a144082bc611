// Package preflight checks, before anything is installed or run, that
// pgreplica can work with a set's databases: every server reachable and
// recent enough, the privileges it needs, the tables on every replica, the
// pg_dump client, the clocks. It changes nothing.
//
// Each check looks at facts gathered once per node and returns findings:
// the problems it found, each with the node, a severity and what to try.
// A check that finds nothing passed. The report's status is the worst
// severity of its findings; only Fail blocks.
package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"pgreplica/core/backup"
	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Severity is how bad a finding is.
type Severity string

// The severities, from harmless to blocking.
const (
	OK   Severity = "ok"
	Warn Severity = "warn"
	Fail Severity = "fail"
)

// Label is the severity as the check table shows it: OK, WARN, FAIL.
func (s Severity) Label() string { return strings.ToUpper(string(s)) }

func (s Severity) rank() int {
	switch s {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// Finding is one problem a check found.
type Finding struct {
	Check    string   `json:"check"`
	Node     string   `json:"node"` // "origin", "replica NAME", or "" for the set
	Severity Severity `json:"severity"`
	Problem  string   `json:"problem"`
	Try      string   `json:"try,omitempty"`
	// Table is the table the finding is about, if any.
	Table string `json:"table,omitempty"`
}

// Result is one check over every node: a line of the check table.
type Result struct {
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	Values   []string `json:"values"` // one per node: the origin, then each replica
	// Problem and Try sum the check's findings up for the table.
	Problem string `json:"-"`
	Try     string `json:"-"`
}

// Report is the outcome of every check.
type Report struct {
	Nodes    []string      `json:"nodes"` // "origin", then "replica NAME" for each replica
	Results  []Result      `json:"checks"`
	Findings []Finding     `json:"findings"`
	Took     time.Duration `json:"-"`
	// Facts of the origin the wizard carries on with.
	ServerMajor    int    `json:"-"`
	PgDump         string `json:"-"` // the pg_dump client found, "" when none fits
	CaptureVersion string `json:"-"`
	Database       string `json:"-"`
}

// Status is the worst severity among the findings.
func (r Report) Status() Severity {
	s := OK
	for _, f := range r.Findings {
		if f.Severity.rank() > s.rank() {
			s = f.Severity
		}
	}
	return s
}

// Blocking counts the checks that failed and those that warned.
func (r Report) Blocking() (fails, warns int) {
	for _, res := range r.Results {
		switch res.Severity {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	return
}

// Facts is what one connection to a node learns.
type Facts struct {
	Node    string // "origin" or "replica NAME"
	Err     error  // the node could not be read
	Version string // e.g. "16.4"
	Major   int
	Create  bool // CREATE on the database
	Now     time.Time
	DB      string
	// Origin only.
	Tables    []capture.TableInfo
	TriggerOK int // tables the role may create triggers on
	Capture   string
	// Replica only: which of the origin's tables exist here, and what of
	// its own acts on applied changes (when the role cannot skip it).
	Has  map[pg.Table]bool
	Side capture.ReplicaSide
}

// Set is every node's facts: the origin first.
type Set struct {
	Origin   Facts
	Replicas []Facts
	Started  time.Time // when the facts were gathered (the origin's clock is compared to it)
	// PgDump is the pg_dump client found for the origin's version, or why
	// there is none.
	PgDump    backup.Client
	PgDumpErr error
}

func (s *Set) all() []Facts { return append([]Facts{s.Origin}, s.Replicas...) }

// A Check looks at the facts and returns its line of the table and its
// findings. It never talks to a server: Gather did.
type Check struct {
	Name string
	Run  func(s *Set) (values []string, findings []Finding)
	// Problem and Try are the table's summary when the check finds
	// something (the findings' own texts otherwise).
	Problem, Try string
}

// Checks is every check, in the order the table shows them.
var Checks = []Check{
	reachable,
	replicasConfigured,
	versionCheck,
	createCheck,
	triggerCheck,
	tablesOnReplica,
	pgDumpCheck,
	primaryKeyCheck,
	captureInstalled,
	clockSkew,
}

// Run gathers the facts of cfg's nodes and runs every check.
func Run(ctx context.Context, cfg *config.Config) Report {
	s := Gather(ctx, cfg)
	rep := Evaluate(&s, Checks)
	rep.Took = time.Since(s.Started)
	return rep
}

// Evaluate runs checks over facts already gathered.
func Evaluate(s *Set, checks []Check) Report {
	var rep Report
	for _, f := range s.all() {
		rep.Nodes = append(rep.Nodes, f.Node)
	}
	if s.Origin.Err == nil {
		rep.ServerMajor, rep.CaptureVersion, rep.Database, rep.PgDump = s.Origin.Major, s.Origin.Capture, s.Origin.DB, s.PgDump.Path
		if s.PgDumpErr != nil {
			rep.PgDump = ""
		}
	}
	for _, c := range checks {
		values, findings := c.Run(s)
		if values == nil {
			continue // the check does not apply (the origin could not be read)
		}
		res := Result{Check: c.Name, Severity: OK, Values: values}
		for i := range findings {
			findings[i].Check = c.Name
			if findings[i].Severity.rank() > res.Severity.rank() {
				res.Severity = findings[i].Severity
			}
		}
		if res.Severity != OK {
			// The table's summary: the check's own text, else its first
			// finding of the worst severity (and how many more there are).
			var worst []Finding
			for _, f := range findings {
				if f.Severity == res.Severity {
					worst = append(worst, f)
				}
			}
			res.Problem, res.Try = c.Problem, c.Try
			if res.Problem == "" {
				res.Problem = worst[0].Problem
				if n := len(findings) - 1; n > 0 {
					res.Problem += fmt.Sprintf(" (and %d more)", n)
				}
			}
			if res.Try == "" {
				res.Try = worst[0].Try
			}
		}
		rep.Results = append(rep.Results, res)
		for _, f := range findings {
			if f.Severity != OK {
				rep.Findings = append(rep.Findings, f)
			}
		}
	}
	return rep
}

// perNode makes a value per node; val returns "" for a node it does not
// apply to ("–" is shown for an unreadable node).
func perNode(s *Set, val func(i int, f Facts) string) []string {
	var out []string
	for i, f := range s.all() {
		if f.Err != nil {
			out = append(out, "–")
			continue
		}
		out = append(out, val(i, f))
	}
	return out
}

var reachable = Check{
	Name: "reachable",
	Try:  "check the DSN (e edits it), that the server runs and that pg_hba.conf lets this host in",
	Run: func(s *Set) ([]string, []Finding) {
		var vals []string
		var fs []Finding
		for _, f := range s.all() {
			if f.Err != nil {
				vals = append(vals, "no")
				fs = append(fs, Finding{Node: f.Node, Severity: Fail, Problem: f.Err.Error(),
					Try: "check the DSN, that the server runs and that pg_hba.conf lets this host in"})
				continue
			}
			vals = append(vals, f.Version)
		}
		return vals, fs
	},
}

var replicasConfigured = Check{
	Name: "replicas",
	Run: func(s *Set) ([]string, []Finding) {
		if len(s.Replicas) > 0 {
			return nil, nil
		}
		return []string{"none"}, []Finding{{Severity: Fail, Problem: "no replica is configured", Try: "e adds a replica DSN"}}
	},
}

var versionCheck = Check{
	Name: "version >= 13",
	Run: func(s *Set) ([]string, []Finding) {
		// A server below 13 is refused at connect (pg.ErrServerTooOld):
		// it shows as unreachable with the version in the reason.
		var fs []Finding
		vals := perNode(s, func(int, Facts) string { return "yes" })
		for i, f := range s.all() {
			if f.Err != nil && pg.IsServerTooOld(f.Err) {
				vals[i] = "no"
				fs = append(fs, Finding{Node: f.Node, Severity: Fail, Problem: f.Err.Error(), Try: "upgrade the server to PostgreSQL 13 or newer"})
			}
		}
		return vals, fs
	},
}

var createCheck = Check{
	Name:    "CREATE on db",
	Problem: "pgreplica creates its schema (pgreplica) in each database: the role needs CREATE on the database",
	Try:     "GRANT CREATE ON DATABASE <db> TO <role>; as the database owner",
	Run: func(s *Set) ([]string, []Finding) {
		var fs []Finding
		vals := perNode(s, func(_ int, f Facts) string {
			if f.Create {
				return "yes"
			}
			fs = append(fs, Finding{Node: f.Node, Severity: Fail,
				Problem: fmt.Sprintf("%s: the role lacks CREATE on database %s (pgreplica creates its schema there)", f.Node, f.DB),
				Try:     fmt.Sprintf("GRANT CREATE ON DATABASE %s TO <role>; as the database owner", pg.Name(f.DB))})
			return "no"
		})
		return vals, fs
	},
}

var triggerCheck = Check{
	Name:    "TRIGGER on",
	Problem: "the capture trigger can only be created by a role with the TRIGGER privilege (or the owner) on each table",
	Try:     "GRANT TRIGGER ON ALL TABLES IN SCHEMA public TO <role>; or connect as the tables' owner",
	Run: func(s *Set) ([]string, []Finding) {
		var fs []Finding
		vals := perNode(s, func(i int, f Facts) string {
			if i > 0 {
				return "n/a"
			}
			n := len(f.Tables)
			if f.TriggerOK < n {
				fs = append(fs, Finding{Node: f.Node, Severity: Fail,
					Problem: fmt.Sprintf("the role may create triggers on %d of %d tables of the origin", f.TriggerOK, n),
					Try:     "GRANT TRIGGER ON ALL TABLES IN SCHEMA public TO <role>; or connect as the tables' owner"})
			}
			return fmt.Sprintf("%d/%d tables", f.TriggerOK, n)
		})
		return vals, fs
	},
}

// missingOn is the origin's tables (those accepted by which) that replica f
// lacks.
func missingOn(s *Set, f Facts, which func(capture.TableInfo) bool) []pg.Table {
	var out []pg.Table
	for _, t := range s.Origin.Tables {
		if which(t) && !f.Has[t.Table] {
			out = append(out, t.Table)
		}
	}
	return out
}

// tablesOnReplica: a table of the origin missing on a replica cannot be
// picked (a warning); a captured one missing there stops replication to
// that replica (blocking).
var tablesOnReplica = Check{
	Name: "tables on replica",
	Run: func(s *Set) ([]string, []Finding) {
		var fs []Finding
		vals := perNode(s, func(i int, f Facts) string {
			if i == 0 {
				return fmt.Sprintf("%d tables", len(f.Tables))
			}
			if s.Origin.Err != nil {
				return "–"
			}
			missing := missingOn(s, f, func(capture.TableInfo) bool { return true })
			for _, t := range missing {
				if captured(s, t) {
					fs = append(fs, Finding{Node: f.Node, Severity: Fail, Table: t.String(),
						Problem: fmt.Sprintf("%s lacks captured table %s: its changes cannot be applied there", f.Node, t),
						Try:     "create it there (pg_dump --schema-only --table '" + t.String() + "' <origin> | psql <replica>), then pgreplica sync --table '" + t.String() + "'"})
				} else {
					fs = append(fs, Finding{Node: f.Node, Severity: Warn, Table: t.String(),
						Problem: fmt.Sprintf("%s lacks table %s: it cannot be picked", f.Node, t),
						Try:     "pg_dump --schema-only --table '" + t.String() + "' <origin> | psql <replica>, then r to re-run the checks"})
				}
			}
			// What of the replica's own acts on applied changes when its
			// role cannot set session_replication_role.
			if len(f.Side.Triggers) > 0 {
				fs = append(fs, Finding{Node: f.Node, Severity: Warn, Table: strings.Join(f.Side.Triggers, ", "),
					Problem: f.Side.TriggersProblem(f.Node), Try: capture.TriggersTry})
			}
			if len(f.Side.FKActions) > 0 {
				fs = append(fs, Finding{Node: f.Node, Severity: Warn, Table: strings.Join(f.Side.FKActions, ", "),
					Problem: f.Side.FKProblem(f.Node), Try: capture.FKTry})
			}
			if len(missing) > 0 {
				return fmt.Sprintf("%d missing", len(missing))
			}
			return "all"
		})
		return vals, fs
	},
}

func captured(s *Set, t pg.Table) bool {
	return slices.ContainsFunc(s.Origin.Tables, func(ti capture.TableInfo) bool { return ti.Table == t && ti.Status == capture.Installed })
}

var pgDumpCheck = Check{
	Name: "pg_dump client",
	Run: func(s *Set) ([]string, []Finding) {
		if s.Origin.Err != nil {
			return nil, nil
		}
		vals := []string{fmt.Sprint(s.PgDump.Major)}
		if s.PgDump.Path == "" {
			vals[0] = "none"
		}
		for range s.Replicas {
			vals = append(vals, "n/a")
		}
		if s.PgDumpErr == nil {
			return vals, nil
		}
		return vals, []Finding{{Node: "origin", Severity: Warn, Problem: s.PgDumpErr.Error(),
			Try: fmt.Sprintf("apt-get install postgresql-client-%d, or skip the backup in step 2 if you have one", s.Origin.Major)}}
	},
}

var primaryKeyCheck = Check{
	Name: "no primary key",
	Run: func(s *Set) ([]string, []Finding) {
		if s.Origin.Err != nil {
			return nil, nil
		}
		var noKey []pg.Table
		for _, t := range s.Origin.Tables {
			if len(t.Key) == 0 {
				noKey = append(noKey, t.Table)
			}
		}
		vals := []string{fmt.Sprintf("%d tables", len(noKey))}
		for range s.Replicas {
			vals = append(vals, "n/a")
		}
		if len(noKey) == 0 {
			return vals, nil
		}
		n := len(noKey)
		f := Finding{Node: "origin", Severity: Warn,
			Problem: fmt.Sprintf("%d %s no primary key: they cannot be replicated (UPDATE/DELETE could not find the row)", n, plural(n, "table has", "tables have")),
			Try:     "ALTER TABLE … ADD PRIMARY KEY (…), or leave them out in step 3"}
		var names []string
		for _, t := range noKey {
			names = append(names, t.String())
		}
		f.Table = strings.Join(names, ", ")
		return vals, []Finding{f}
	},
}

var captureInstalled = Check{
	Name: "capture installed",
	Run: func(s *Set) ([]string, []Finding) {
		if s.Origin.Err != nil {
			return nil, nil
		}
		cv := "not yet"
		if s.Origin.Capture != "" {
			cv = "version " + s.Origin.Capture
		}
		vals := []string{cv}
		for range s.Replicas {
			vals = append(vals, "")
		}
		// What capture cannot carry is said loudly (never skipped).
		var stale, removed []string
		for _, t := range s.Origin.Tables {
			switch t.Status {
			case capture.Stale:
				stale = append(stale, t.Table.String())
			case capture.Removed:
				removed = append(removed, t.Table.String())
			}
		}
		var fs []Finding
		if len(stale) > 0 {
			fs = append(fs, Finding{Node: "origin", Severity: Fail, Table: strings.Join(stale, ", "),
				Problem: "capture is stale for " + strings.Join(stale, ", ") + ": the table changed (ALTER TABLE) since its capture was made, and a column added since is not replicated",
				Try:     "run pgreplica install (a superuser's install also adds the event trigger that keeps capture current)"})
		}
		if len(removed) > 0 {
			fs = append(fs, Finding{Node: "origin", Severity: Warn, Table: strings.Join(removed, ", "),
				Problem: "capture was removed from " + strings.Join(removed, ", ") + ": its replicas are no longer kept in step",
				Try:     "pgreplica add-table --sync " + strings.Join(removed, " ") + ", or leave it out under tables.exclude"})
		}
		return vals, fs
	},
}

var clockSkew = Check{
	Name:    "clock skew",
	Problem: "the clocks differ by seconds: lag figures will be off (replication itself is not affected)",
	Try:     "run NTP (chrony, systemd-timesyncd) on the servers",
	Run: func(s *Set) ([]string, []Finding) {
		if s.Origin.Err != nil {
			return nil, nil
		}
		var fs []Finding
		vals := perNode(s, func(i int, f Facts) string {
			d := f.Now.Sub(s.Origin.Now)
			if i == 0 {
				d = f.Now.Sub(s.Started)
			}
			d = d.Abs()
			if d > 5*time.Second {
				fs = append(fs, Finding{Node: f.Node, Severity: Warn,
					Problem: fmt.Sprintf("%s: the clock differs by %s: lag figures will be off", f.Node, d.Round(time.Millisecond)),
					Try:     "run NTP (chrony, systemd-timesyncd) on the servers"})
			}
			return fmt.Sprintf("%d ms", d.Milliseconds())
		})
		return vals, fs
	},
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
