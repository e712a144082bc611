package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"pgreplica/core/config"
	"pgreplica/core/pg"
	"pgreplica/core/tablecopy"
)

func (a *app) syncCommand() *cobra.Command {
	var replicas, tables []string
	var workers int
	var schema bool
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy tables from the origin to replicas online",
		Long: `Copies the selected tables from the origin to the replicas while the origin
keeps taking writes and the engine keeps running, then hands them to the
engine, which applies exactly the changes the copy did not see.

For each replica, the tables are first marked as being copied (the engine
holds their changes from then on); then one origin snapshot is taken and
shared by --workers parallel copies (SET TRANSACTION SNAPSHOT), each
streaming COPY ... TO STDOUT from the origin into COPY ... FROM STDIN on the
replica, no temporary files; each table's copy replaces the replica's rows
in one transaction that also records the snapshot. The other tables keep
replicating meanwhile.

A table with a rule for the replica (replicas[].tables: where, columns,
rename, target, transform) is copied as the rule selects it: COPY of a query
with the filter install checked. After changing a rule, run pgreplica
install, then sync --replica R --table T: tables and status say "needs
re-copy" until then.

Capture is installed first where missing (triggers on the origin,
bookkeeping and a position on the replicas), so that nothing written during
the copy is lost. With --schema, tables the replica lacks are created first
from the origin's definitions (columns, types, safe defaults, keys,
constraints, indexes; enum, domain and composite types), so a fresh empty
replica needs nothing but 'pgreplica sync --schema' and then the engine.

Asks before replacing rows a replica already has, unless --yes. Progress
(rows, bytes, rate, ETA) goes to standard error. If sync is interrupted,
the unfinished tables stay marked as being copied (their changes are held,
not lost): run it again.`,
		Example: `  pgreplica -c shop.yaml sync --schema           # a new, empty replica, online
  # re-copy a drifted table
  pgreplica -c shop.yaml sync --replica reporting --table public.orders --yes
  pgreplica -c shop.yaml sync --workers 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := a.replicaSelection(replicas)
			if err != nil {
				return err
			}
			var names []pg.Table
			if len(tables) > 0 {
				if names, err = parseTables(tables); err != nil {
					return err
				}
			}
			if workers < 0 {
				return usagef("--workers must be positive (got %d)", workers)
			}
			cfg, err := a.loadConfigWithReplicas()
			if err != nil {
				return err
			}
			return a.runSync(cmd, cfg, tablecopy.Options{Replica: name, Tables: names, Workers: workers, Schema: schema})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&replicas, "replica", nil, "copy to replica `NAME` only (default: every replica)")
	f.StringArrayVar(&tables, "table", nil, "copy `TABLE` only (schema.table; repeatable; default: every selected table)")
	f.IntVar(&workers, "workers", 0, fmt.Sprintf("tables copied at the same time (default %d)", tablecopy.DefaultWorkers))
	f.BoolVar(&schema, "schema", false, "create the tables the replica lacks from the origin's definitions")
	a.addYesFlag(cmd)
	return cmd
}

// replicaSelection reads the --replica values of sync and verify, which
// name a replica of the config. The global --replica takes a DSN; a value
// that can only be a DSN (replica names are plain words) is taken as that.
func (a *app) replicaSelection(values []string) (string, error) {
	var names []string
	for _, v := range values {
		if strings.ContainsAny(v, "=/: ") || strings.HasPrefix(v, "@") {
			a.replicaDSN = append(a.replicaDSN, v)
			continue
		}
		names = append(names, v)
	}
	if len(names) > 1 {
		return "", usagef("--replica names one replica (got %s)", strings.Join(names, ", "))
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", nil
}

// runSync asks when rows would be replaced, then copies with progress on
// standard error.
func (a *app) runSync(cmd *cobra.Command, cfg *config.Config, opt tablecopy.Options) error {
	ctx := cmd.Context()
	plan, err := tablecopy.Plan(ctx, cfg, opt)
	if err != nil {
		return err
	}
	byReplica := map[string][]string{}
	var order []string
	for _, t := range plan {
		if !t.HasRows {
			continue
		}
		if byReplica[t.Replica] == nil {
			order = append(order, t.Replica)
		}
		byReplica[t.Replica] = append(byReplica[t.Replica], t.Table.String())
	}
	if len(order) > 0 {
		var parts []string
		for _, r := range order {
			parts = append(parts, fmt.Sprintf("%s on replica %s", syncListNames(byReplica[r], 4), r))
		}
		if err := a.confirm("Replace the rows of " + strings.Join(parts, " and ") + " with the origin's?"); err != nil {
			return err
		}
	}
	opt.Report = a.line
	pp := newProgressPrinter(a.stderr)
	start := time.Now()
	err = tablecopy.Sync(ctx, cfg, opt, pp.update)
	pp.finish()
	if err != nil {
		return err
	}
	tables, rows, bytes := pp.totals()
	took := time.Since(start)
	a.line(fmt.Sprintf("copied %s (%d rows, %s) in %s; the engine now applies what changed since (pgreplica run)",
		syncPlural(tables, "table"), rows, syncMB(bytes), took.Round(10*time.Millisecond)))
	return nil
}

func syncListNames(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

func syncPlural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func syncMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// progressPrinter shows sync progress: a line per table when it starts and
// when it is done; in a terminal also a status line redrawn in place, and
// otherwise a plain line per table every plainEvery.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	width int

	mu        sync.Mutex
	active    map[string]tablecopy.Progress
	drawn     bool // a status line is on the screen
	lastDraw  time.Time
	lastPlain map[string]time.Time
	done      []tablecopy.Progress
}

const plainEvery = 10 * time.Second

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w, active: map[string]tablecopy.Progress{}, lastPlain: map[string]time.Time{}, width: 100}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			p.width = cols
		}
	}
	return p
}

func progressKey(x tablecopy.Progress) string { return x.Replica + "\x00" + x.Table.String() }

func (p *progressPrinter) update(x tablecopy.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := progressKey(x)
	_, known := p.active[k]
	switch {
	case x.Done:
		delete(p.active, k)
		p.done = append(p.done, x)
		p.println(fmt.Sprintf("%s %s: copied %d rows (%s) in %s: %.0f rows/s, %.1f MB/s", x.Replica, x.Table, x.Rows,
			syncMB(x.Bytes), x.Took.Round(10*time.Millisecond), x.RowsPerSecond(), x.BytesPerSecond()/1e6))
	case !known:
		p.active[k] = x
		p.lastPlain[k] = time.Now()
		est := "size unknown"
		if x.TotalRows > 0 {
			est = fmt.Sprintf("about %d rows, %s on disk", x.TotalRows, syncMB(x.TotalBytes))
		}
		p.println(fmt.Sprintf("%s %s: copying (%s)", x.Replica, x.Table, est))
	default:
		p.active[k] = x
		if !p.tty && time.Since(p.lastPlain[k]) >= plainEvery {
			p.lastPlain[k] = time.Now()
			p.println(fmt.Sprintf("%s %s: %s", x.Replica, x.Table, progressText(x)))
			return
		}
	}
	if p.tty && time.Since(p.lastDraw) >= 200*time.Millisecond {
		p.draw()
	}
}

func progressText(x tablecopy.Progress) string {
	s := fmt.Sprintf("%d rows, %s, %.1f MB/s", x.Rows, syncMB(x.Bytes), x.BytesPerSecond()/1e6)
	if f := x.Fraction(); f >= 0 {
		s = fmt.Sprintf("%.0f%% ", f*100) + s
		if eta := x.ETA(); eta > 0 {
			s += ", ETA " + eta.Round(time.Second).String()
		}
	}
	return s
}

// println prints a permanent line, above the status line in a terminal.
func (p *progressPrinter) println(s string) {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	fmt.Fprintln(p.w, s)
	if p.tty {
		p.draw()
	}
}

// draw redraws the status line of the tables being copied.
func (p *progressPrinter) draw() {
	p.lastDraw = time.Now()
	if len(p.active) == 0 {
		if p.drawn {
			fmt.Fprint(p.w, "\r\033[K")
			p.drawn = false
		}
		return
	}
	keys := make([]string, 0, len(p.active))
	for k := range p.active {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		x := p.active[k]
		parts[i] = x.Table.String() + " " + progressText(x)
	}
	line := "copying " + strings.Join(parts, " · ")
	if r := []rune(line); len(r) > p.width-1 {
		line = string(r[:p.width-2]) + "…"
	}
	fmt.Fprint(p.w, "\r\033[K"+line)
	p.drawn = true
}

func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func (p *progressPrinter) totals() (tables int, rows, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.done {
		rows += d.Rows
		bytes += d.Bytes
	}
	return len(p.done), rows, bytes
}
