package preflight

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/backup"
	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// NodeTimeout bounds the reading of one node's facts.
const NodeTimeout = 10 * time.Second

// Gather connects to the origin and every replica (at the same time, one
// connection each) and reads the facts the checks look at. It changes
// nothing.
func Gather(ctx context.Context, cfg *config.Config) Set {
	s := Set{Started: time.Now()}
	s.Origin = facts(ctx, "origin", cfg.Origin.DSN, func(ctx context.Context, c *pgx.Conn, f *Facts) error {
		var err error
		if f.Tables, err = capture.ListTables(ctx, c, capture.UserTables); err != nil {
			return err
		}
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgreplica')
		      AND n.nspname NOT LIKE 'pg_toast%' AND NOT (n.nspname = 'public' AND c.relname = 'pgreplica_smoke')
		      AND has_table_privilege(c.oid, 'TRIGGER')`).Scan(&f.TriggerOK); err != nil {
			return err
		}
		f.Capture, err = capture.SchemaVersion(ctx, c)
		return err
	})
	tables := make([]pg.Table, len(s.Origin.Tables))
	for i, t := range s.Origin.Tables {
		tables[i] = t.Table
	}
	s.Replicas = make([]Facts, len(cfg.Replicas))
	var wg sync.WaitGroup
	for i, r := range cfg.Replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Replicas[i] = facts(ctx, pg.ReplicaRole(r.Name), r.DSN, func(ctx context.Context, c *pgx.Conn, f *Facts) error {
				var err error
				if f.Has, err = capture.Present(ctx, c, tables); err != nil {
					return err
				}
				var here []pg.Table
				for _, t := range tables {
					if f.Has[t] {
						here = append(here, t)
					}
				}
				f.Side, err = capture.ReadReplicaSide(ctx, c, here)
				return err
			})
		}()
	}
	wg.Wait()
	if s.Origin.Err == nil {
		s.PgDump, s.PgDumpErr = backup.Find(ctx, s.Origin.Major)
	}
	return s
}

func facts(ctx context.Context, node, dsn string, more func(context.Context, *pgx.Conn, *Facts) error) Facts {
	f := Facts{Node: node}
	ctx, cancel := context.WithTimeout(ctx, NodeTimeout)
	defer cancel()
	if dsn == "" {
		f.Err = errors.New("no DSN")
		return f
	}
	c, err := pg.ConnectAs(ctx, node, dsn, pg.AppName("check"))
	if err != nil {
		f.Err = err
		return f
	}
	defer c.Close(context.WithoutCancel(ctx))
	var num int
	if err := c.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
	        has_database_privilege(current_database(), 'CREATE'), now(), current_database()`).Scan(&f.Version, &num, &f.Create, &f.Now, &f.DB); err != nil {
		f.Err = err
		return f
	}
	f.Major = num / 10000
	if i := strings.IndexByte(f.Version, ' '); i > 0 {
		f.Version = f.Version[:i]
	}
	if err := more(ctx, c, &f); err != nil {
		f.Err = err
	}
	return f
}
