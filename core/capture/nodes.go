package capture

import (
	"context"
	"fmt"
	"strings"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// installNodes installs a multi-master set: on every node the capture
// schema and triggers (its own writes are captured) and the bookkeeping
// schema with a position for every other node's stream. Every node is
// reached, and told apart from the others, before anything is changed.
// Each direction is then installed as a one-way set (Config.Directions).
func installNodes(ctx context.Context, cfg *config.Config, opt Options, report Report) error {
	if err := CheckNodes(ctx, cfg); err != nil {
		return err
	}
	if err := CheckNodeSequences(ctx, cfg, opt.FixSequences, report); err != nil {
		return err
	}
	for _, d := range cfg.Directions("") {
		if err := InstallWith(ctx, d, opt, nodeReport(d.Source, report)); err != nil {
			return fmt.Errorf("node %s: %w", d.Source, err)
		}
	}
	return nil
}

// CheckNodes connects to every node and makes sure no database is listed
// twice (under two DSNs that name the same database).
func CheckNodes(ctx context.Context, cfg *config.Config) error {
	seen := map[string]string{}
	for _, n := range cfg.Nodes {
		c, err := pg.ConnectAs(ctx, "node "+n.Name, n.DSN, pg.AppName("install"))
		if err != nil {
			return fmt.Errorf("%w; nothing was installed", err)
		}
		// The cluster's identity where the role may read it, else the
		// server's address; with the database's name.
		var id string
		err = c.QueryRow(ctx, `SELECT coalesce((SELECT system_identifier::text FROM pg_control_system()
		                                         WHERE has_function_privilege('pg_control_system()', 'EXECUTE')),
		                                        coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port') || ':' || current_setting('data_directory', true))
		                              || '/' || current_database()`).Scan(&id)
		c.Close(ctx)
		if err != nil {
			return fmt.Errorf("node %s: identify the database: %w; nothing was installed", n.Name, err)
		}
		if other, dup := seen[id]; dup {
			return fmt.Errorf("nodes %s and %s are the same database: list each node once; nothing was installed", other, n.Name)
		}
		seen[id] = n.Name
	}
	return nil
}

// nodeReport names the node in the lines of one direction's install:
// "origin: ..." is the source node's, "replica b: ..." node b's.
func nodeReport(source string, report Report) Report {
	return func(line string) {
		switch {
		case strings.HasPrefix(line, "origin: "):
			report("node " + source + ": " + strings.TrimPrefix(line, "origin: "))
		case strings.HasPrefix(line, "replica "):
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "replica "), ": ")
			report("node " + name + ": " + strings.Replace(rest, "replicating from now on", "applying "+source+"'s changes from now on", 1))
		default:
			report("node " + source + ": " + line)
		}
	}
}
