// Package tablecopy copies tables from the origin to replicas online, while
// the origin keeps taking writes and the replay engine keeps running
// (pgreplica sync, add-table --sync).
//
// The copy follows the protocol the replay engine implements (see
// core/replay, applyIn): for each replica,
//
//  1. the tables are marked 'copying' in pgreplica.table_state, in a replica
//     transaction of their own; from then on the engine holds their events
//     in pgreplica.held instead of applying them;
//  2. only then is the origin snapshot C taken, in a REPEATABLE READ
//     transaction whose snapshot is exported to the parallel workers (SET
//     TRANSACTION SNAPSHOT), so every table is copied at the same C;
//  3. each table is copied in one replica transaction: TRUNCATE, COPY ... TO
//     STDOUT on the origin streamed into COPY ... FROM STDIN on the replica
//     (no temporary files), then table_state = ('catchup', C), commit.
//
// The engine then applies the held events and the later ones, skipping
// those whose transaction is visible in C (the copy has them), and marks
// the table 'replicating' once its position covers C. A transaction not
// visible in C committed after the table was marked 'copying', so its
// events were held, not applied before the copy: nothing is lost and
// nothing applied twice. A sync that dies leaves its unfinished tables in
// 'copying' (their events keep being held); running it again copies them at
// a new snapshot.
package tablecopy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/capture"
	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/replay"
)

// Options select what Sync copies. The zero value copies every selected
// table to every replica.
type Options struct {
	Replica string     // the replica to copy to; "" = every replica
	Tables  []pg.Table // the tables to copy; nil = every selected table with a primary key
	Workers int        // tables copied at the same time per replica; 0 = DefaultWorkers
	Schema  bool       // first create the tables missing on the replicas from the origin's definitions
	// Report receives a line for each thing installed or created on the
	// way (capture, bookkeeping, tables); nil discards them.
	Report func(line string)
}

// DefaultWorkers is how many tables are copied in parallel by default (never
// more than there are tables).
const DefaultWorkers = 4

// Sync copies tables from the origin to replicas online (see the package
// documentation): with Schema it first creates the tables the replicas lack;
// it installs capture and the replicas' bookkeeping where missing (so that
// nothing written during the copy is lost); then, replica after replica, it
// copies every table at one origin snapshot, replacing the replica's rows.
// progress (may be nil) is called from the copying goroutines, never
// concurrently, and must not block.
func Sync(ctx context.Context, cfg *config.Config, opt Options, progress func(Progress)) error {
	report := opt.Report
	if report == nil {
		report = func(string) {}
	}
	if progress == nil {
		progress = func(Progress) {}
	}
	targets, err := targetReplicas(cfg, opt.Replica)
	if err != nil {
		return err
	}
	origin, err := pg.ConnectOrigin(ctx, cfg, "sync "+cfg.Name)
	if err != nil {
		return err
	}
	defer origin.Close(context.WithoutCancel(ctx))
	tables, err := SelectTables(ctx, origin, cfg, opt.Tables)
	if err != nil {
		return err
	}
	if opt.Tables == nil {
		if err := reportNoKey(ctx, origin, cfg, report); err != nil {
			return err
		}
	}
	if len(tables) == 0 {
		return errors.New("no table to copy: no selected table of the origin has a primary key")
	}
	created := map[string]map[pg.Table]bool{}
	if opt.Schema {
		for _, r := range targets {
			c, err := CreateMissingTables(ctx, origin, cfg, r, tables, report)
			if err != nil {
				return err
			}
			created[r.Name] = c
		}
	}
	if err := ensureCapture(ctx, cfg, targets, tables, report); err != nil {
		return err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	workers = min(workers, len(tables))
	lockedProgress := serialize(progress)
	for _, r := range targets {
		c := &copier{cfg: cfg, replica: r, tables: tables, workers: workers, progress: lockedProgress,
			created: created[r.Name]}
		if err := c.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// targetReplicas is the named replica, or all.
func targetReplicas(cfg *config.Config, name string) ([]config.Replica, error) {
	if err := cfg.RequireReplicas(); err != nil {
		return nil, err
	}
	if name == "" {
		return cfg.Connected(), nil // file replicas start from export --base
	}
	r, err := cfg.Replica(name)
	if err != nil {
		return nil, err
	}
	return []config.Replica{r}, nil
}

// SelectTables resolves the tables to work on: the named ones, each of
// which must exist on the origin with a primary key, or (names nil) every
// table the config selects that has a primary key.
func SelectTables(ctx context.Context, origin *pgx.Conn, cfg *config.Config, names []pg.Table) ([]pg.Table, error) {
	if names == nil {
		all, err := capture.ListTables(ctx, origin, cfg.Tables.Match)
		if err != nil {
			return nil, fmt.Errorf("origin: %w", err)
		}
		var out []pg.Table
		for _, t := range all {
			if t.Key != nil {
				out = append(out, t.Table)
			}
		}
		return out, nil
	}
	all, err := capture.ListTables(ctx, origin, nil)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	byName := make(map[pg.Table]capture.TableInfo, len(all))
	for _, t := range all {
		byName[t.Table] = t
	}
	var out []pg.Table
	var problems []error
	seen := map[pg.Table]bool{}
	for _, t := range names {
		info, ok := byName[t]
		switch {
		case seen[t]:
			continue
		case !ok:
			problems = append(problems, fmt.Errorf("origin has no table %s", t))
		case info.Key == nil:
			problems = append(problems, fmt.Errorf("%s has no primary key on the origin: it cannot be replicated", t))
		default:
			out = append(out, t)
		}
		seen[t] = true
	}
	return out, errors.Join(problems...)
}

// reportNoKey says which selected tables are left out for want of a
// primary key.
func reportNoKey(ctx context.Context, origin *pgx.Conn, cfg *config.Config, report func(string)) error {
	all, err := capture.ListTables(ctx, origin, cfg.Tables.Match)
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	for _, t := range all {
		if t.Key == nil {
			report(t.Table.String() + " has no primary key: not replicated, not copied")
		}
	}
	return nil
}

// ensureCapture installs what must exist before a copy can start: capture on
// the origin for the tables (so that every change not in the copy is
// logged) and the bookkeeping schema with a position on each target replica.
// It runs capture.Install on the target replicas plus the other replicas that
// already replicate (so that no trigger is created that one of them could
// not apply), once per table: creating a trigger locks its table until
// commit, and one transaction that locks several tables of a busy origin
// one after another deadlocks with application transactions that write them
// in another order. Install changes nothing when it fails, so lock trouble
// is retried. Re-running it changes nothing that is current.
func ensureCapture(ctx context.Context, cfg *config.Config, targets []config.Replica, tables []pg.Table, report func(string)) error {
	sub := *cfg
	sub.Replicas = slices.Clone(targets)
	for _, r := range cfg.Replicas {
		if slices.ContainsFunc(targets, func(t config.Replica) bool { return t.Name == r.Name }) {
			continue
		}
		if replicates(ctx, cfg, r) {
			sub.Replicas = append(sub.Replicas, r)
		}
	}
	seen := map[string]bool{}
	quiet := func(line string) {
		// The schema lines repeat for every table: say each once.
		if strings.Contains(line, "schema is current") || strings.Contains(line, "bookkeeping schema") {
			if seen[line] {
				return
			}
			seen[line] = true
		}
		report(line)
	}
	for _, t := range tables {
		if strings.Contains(t.Schema, ".") {
			return fmt.Errorf("cannot install capture on %s from sync: its schema name contains a dot; run pgreplica install first", t)
		}
		sub.Tables = config.Tables{Include: []string{globQuote(t.Schema) + "." + globQuote(t.Name)}}
		if err := pg.Retry(ctx, 5, 200*time.Millisecond, pg.IsLockBusy, func() error {
			// A table whose capture was removed is copied again here: capture it again.
			return capture.InstallWith(ctx, &sub, capture.Options{Recapture: true, Some: true}, quiet)
		}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return nil
}

// replicates reports whether a replica has a position for the set (or
// cannot be reached, in which case it is assumed to).
func replicates(ctx context.Context, cfg *config.Config, r config.Replica) bool {
	conn, err := pg.ConnectReplica(ctx, r, "sync "+cfg.Name)
	if err != nil {
		return true
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = replay.ReadPosition(ctx, conn, cfg.Name)
	return !errors.Is(err, replay.ErrNoPosition)
}

// globQuote escapes the characters that config table patterns treat
// specially, so the pattern matches exactly s.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\*?[`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// serialize makes a callback safe to call from several goroutines.
func serialize(f func(Progress)) func(Progress) {
	ch := make(chan struct{}, 1)
	return func(p Progress) {
		ch <- struct{}{}
		defer func() { <-ch }()
		f(p)
	}
}
