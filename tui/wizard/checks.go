package wizard

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/backup"
	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Check levels.
const (
	OK   = "OK"
	Warn = "WARN"
	Fail = "FAIL"
)

// Finding is one line of the connect step's check table.
type Finding struct {
	Name   string
	Level  string
	Values []string // one per column: origin, then each replica
	// Problem and Try explain a WARN or FAIL.
	Problem, Try string
}

// CheckReport is the result of the connect step's checks.
type CheckReport struct {
	Columns  []string
	Findings []Finding
	Took     time.Duration
	// ServerMajor is the origin's major version; PgDump the client found.
	ServerMajor    int
	PgDump         string
	CaptureVersion string
	Database       string
}

// Blocking counts the FAIL findings; warnings the WARN ones.
func (r CheckReport) Blocking() (fails, warns int) {
	for _, f := range r.Findings {
		switch f.Level {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	return
}

type nodeFacts struct {
	err        error
	version    string
	major      int
	create     bool
	now        time.Time
	triggerOK  int
	tables     int
	noKey      int
	replicaHas map[pg.Table]bool
	capture    string
	db         string
}

// userTables is every table the wizard may offer (all but pgreplica's own
// and the smoke test's).
func userTables(schema, table string) bool {
	return schema != config.OwnSchema && !(schema == "public" && table == "pgreplica_smoke")
}

// Check connects to the origin and every replica and checks versions and
// privileges, the pg_dump client and the tables. It changes nothing.
func Check(ctx context.Context, cfg *config.Config) CheckReport {
	start := time.Now()
	rep := CheckReport{Columns: []string{"ORIGIN"}}
	var origin nodeFacts
	var originTables []capture.TableInfo
	origin = facts(ctx, "origin", cfg.Origin.DSN, func(ctx context.Context, c *pgx.Conn, f *nodeFacts) error {
		var err error
		originTables, err = capture.ListTables(ctx, c, userTables)
		if err != nil {
			return err
		}
		f.tables = len(originTables)
		for _, t := range originTables {
			if len(t.Key) == 0 {
				f.noKey++
			}
		}
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgreplica')
		      AND n.nspname NOT LIKE 'pg_toast%' AND NOT (n.nspname = 'public' AND c.relname = 'pgreplica_smoke')
		      AND has_table_privilege(c.oid, 'TRIGGER')`).Scan(&f.triggerOK); err != nil {
			return err
		}
		f.capture, err = capture.SchemaVersion(ctx, c)
		return err
	})
	reps := make([]nodeFacts, len(cfg.Replicas))
	for i, r := range cfg.Replicas {
		rep.Columns = append(rep.Columns, strings.ToUpper(r.Name))
		reps[i] = facts(ctx, "replica "+r.Name, r.DSN, func(ctx context.Context, c *pgx.Conn, f *nodeFacts) error {
			f.replicaHas = map[pg.Table]bool{}
			for _, t := range originTables {
				var ok bool
				if err := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.Table.Ident()).Scan(&ok); err != nil {
					return err
				}
				f.replicaHas[t.Table] = ok
			}
			return nil
		})
	}
	all := append([]nodeFacts{origin}, reps...)
	row := func(name string, val func(i int, f nodeFacts) (string, string)) Finding {
		fd := Finding{Name: name, Level: OK}
		for i, f := range all {
			v, lvl := val(i, f)
			fd.Values = append(fd.Values, v)
			if rank(lvl) > rank(fd.Level) {
				fd.Level = lvl
			}
		}
		return fd
	}
	// reachable
	fd := row("reachable", func(_ int, f nodeFacts) (string, string) {
		if f.err != nil {
			return "no", Fail
		}
		return f.version, OK
	})
	for i, f := range all {
		if f.err != nil {
			fd.Problem = fmt.Sprintf("%s: %v", strings.ToLower(rep.Columns[i]), f.err)
			fd.Try = "check the DSN (e edits it), that the server runs and that pg_hba.conf lets this host in"
			break
		}
	}
	rep.Findings = append(rep.Findings, fd)
	if len(cfg.Replicas) == 0 {
		rep.Findings = append(rep.Findings, Finding{Name: "replicas", Level: Fail, Values: []string{"none"}, Problem: "no replica is configured", Try: "e adds a replica DSN"})
	}
	fd = row("version >= 13", func(_ int, f nodeFacts) (string, string) {
		if f.err != nil {
			return "–", OK
		}
		return "yes", OK
	})
	rep.Findings = append(rep.Findings, fd)
	fd = row("CREATE on db", func(_ int, f nodeFacts) (string, string) {
		switch {
		case f.err != nil:
			return "–", OK
		case f.create:
			return "yes", OK
		}
		return "no", Fail
	})
	if fd.Level == Fail {
		fd.Problem = "pgreplica creates its schema (pgreplica) in each database: the role needs CREATE on the database"
		fd.Try = "GRANT CREATE ON DATABASE <db> TO <role>; as the database owner"
	}
	rep.Findings = append(rep.Findings, fd)
	fd = row("TRIGGER on", func(i int, f nodeFacts) (string, string) {
		switch {
		case f.err != nil || i > 0:
			return "n/a", OK
		case f.triggerOK < f.tables:
			return fmt.Sprintf("%d/%d tables", f.triggerOK, f.tables), Fail
		}
		return fmt.Sprintf("%d/%d tables", f.triggerOK, f.tables), OK
	})
	if fd.Level == Fail {
		fd.Problem = "the capture trigger can only be created by a role with the TRIGGER privilege (or the owner) on each table"
		fd.Try = "GRANT TRIGGER ON ALL TABLES IN SCHEMA public TO <role>; or connect as the tables' owner"
	}
	rep.Findings = append(rep.Findings, fd)
	fd = row("tables on replica", func(i int, f nodeFacts) (string, string) {
		if f.err != nil || i == 0 {
			if i == 0 && f.err == nil {
				return fmt.Sprintf("%d tables", f.tables), OK
			}
			return "–", OK
		}
		missing := 0
		for _, has := range f.replicaHas {
			if !has {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Sprintf("%d missing", missing), Warn
		}
		return "all", OK
	})
	if fd.Level == Warn {
		fd.Problem = "some tables of the origin do not exist on a replica: they cannot be picked"
		fd.Try = "pg_dump --schema-only <origin> | psql <replica>, then r to re-run the checks"
	}
	rep.Findings = append(rep.Findings, fd)
	if origin.err == nil {
		rep.ServerMajor, rep.CaptureVersion, rep.Database = origin.major, origin.capture, origin.db
		client, err := backup.Find(ctx, origin.major)
		f := Finding{Name: "pg_dump client", Level: OK, Values: []string{fmt.Sprint(client.Major)}}
		if client.Path == "" {
			f.Values[0] = "none"
		}
		if err != nil {
			f.Level, f.Problem = Warn, err.Error()
			f.Try = fmt.Sprintf("apt-get install postgresql-client-%d, or skip the backup in step 2 if you have one", origin.major)
		} else {
			rep.PgDump = client.Path
		}
		for range reps {
			f.Values = append(f.Values, "n/a")
		}
		rep.Findings = append(rep.Findings, f)
		nk := Finding{Name: "no primary key", Level: OK, Values: []string{fmt.Sprintf("%d tables", origin.noKey)}}
		if origin.noKey > 0 {
			nk.Level = Warn
			nk.Problem = fmt.Sprintf("%d %s no primary key: they cannot be replicated (UPDATE/DELETE could not find the row)", origin.noKey, plural(origin.noKey, "table has", "tables have"))
			nk.Try = "ALTER TABLE … ADD PRIMARY KEY (…), or leave them out in step 3"
		}
		for range reps {
			nk.Values = append(nk.Values, "n/a")
		}
		rep.Findings = append(rep.Findings, nk)
		cv := "not yet"
		if origin.capture != "" {
			cv = "version " + origin.capture
		}
		capf := Finding{Name: "capture installed", Level: OK, Values: []string{cv}}
		for range reps {
			capf.Values = append(capf.Values, "")
		}
		rep.Findings = append(rep.Findings, capf)
		fd = row("clock skew", func(i int, f nodeFacts) (string, string) {
			if f.err != nil {
				return "–", OK
			}
			d := f.now.Sub(origin.now)
			if i == 0 {
				d = f.now.Sub(start)
			}
			if d < 0 {
				d = -d
			}
			lvl := OK
			if d > 5*time.Second {
				lvl = Warn
			}
			return fmt.Sprintf("%d ms", d.Milliseconds()), lvl
		})
		if fd.Level == Warn {
			fd.Problem = "the clocks differ by seconds: lag figures will be off (replication itself is not affected)"
			fd.Try = "run NTP (chrony, systemd-timesyncd) on the servers"
		}
		rep.Findings = append(rep.Findings, fd)
	}
	rep.Took = time.Since(start)
	return rep
}

func rank(level string) int {
	switch level {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

func facts(ctx context.Context, role, dsn string, more func(context.Context, *pgx.Conn, *nodeFacts) error) nodeFacts {
	var f nodeFacts
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if dsn == "" {
		f.err = fmt.Errorf("no DSN")
		return f
	}
	c, err := pg.ConnectAs(ctx, role, dsn, "pgreplica wizard")
	if err != nil {
		f.err = err
		return f
	}
	defer c.Close(context.WithoutCancel(ctx))
	var num int
	if err := c.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
	        has_database_privilege(current_database(), 'CREATE'), now(), current_database()`).Scan(&f.version, &num, &f.create, &f.now, &f.db); err != nil {
		f.err = err
		return f
	}
	f.major = num / 10000
	if i := strings.IndexByte(f.version, ' '); i > 0 {
		f.version = f.version[:i]
	}
	if err := more(ctx, c, &f); err != nil {
		f.err = err
	}
	return f
}
