package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"pgreplica/core/bundle"
	"pgreplica/core/config"
)

// The commands of file replicas: export on the origin's side, import where
// the replica is, ack back on the origin's side.

type bundleJSON struct {
	File      string `json:"file"`
	Kind      string `json:"kind"`
	Set       string `json:"set"`
	Replica   string `json:"replica"`
	Seq       int64  `json:"seq"`
	From      string `json:"from,omitempty"`
	To        string `json:"to"`
	Events    int64  `json:"events"`
	Tables    int    `json:"tables,omitempty"`
	Rows      int64  `json:"rows,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	RawBytes  int64  `json:"raw_bytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	CreatedAt string `json:"created_at"`
}

func toBundleJSON(path string, h bundle.Header) bundleJSON {
	j := bundleJSON{File: path, Kind: h.Kind, Set: h.Set, Replica: h.Replica, Seq: h.Seq, To: h.To.String(),
		Events: h.Events, Tables: h.Tables, Rows: h.Rows, CreatedAt: h.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")}
	if !h.From.Snapshot.IsZero() {
		j.From = h.From.String()
	}
	return j
}

func (a *app) exportCommand() *cobra.Command {
	var replicas, recipients []string
	var dir string
	var maxBytes int64
	var base, asJSON bool
	cmd := &cobra.Command{
		Use:   "export --replica NAME [--to DIR]",
		Short: "Write the changes for a file replica into bundle files",
		Long: `Writes the events captured after a file replica's last exported position into
bundle files in DIR, cut by transaction snapshots exactly as the engine reads
them, in apply order. A bundle holds a header (set, replica, sequence number,
from and to positions, event count, capture schema version, creation time),
the events and a SHA-256 trailer, compressed with zstd and, with --recipient,
encrypted with age. A bundle is cut at about --max-bytes of content; each is
recorded on the origin (pgreplica.bundle_export), so the next export goes on
where this one ended. With nothing new committed nothing is written.

--base first writes a copy of every selected table at one snapshot: the
bundle a new file replica starts from (its tables must exist there, e.g. from
pg_dump --schema-only). Carry the files to the replica's site and run
pgreplica import there; bring back its acknowledgement for pgreplica ack.

The replica is one with file: true in the config (replicas: [{name: dmz,
file: true}]); the origin keeps its events until they are acknowledged.`,
		Example: `  pgreplica -c shop.yaml export --replica dmz --base --to /mnt/transfer
  pgreplica -c shop.yaml export --replica dmz --to /mnt/transfer --max-bytes 268435456
  pgreplica -c shop.yaml export --replica dmz --to /mnt/transfer --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := a.replicaSelection(replicas)
			if err != nil {
				return err
			}
			if maxBytes < 0 {
				return usagef("--max-bytes must be positive (got %d)", maxBytes)
			}
			rcpts, err := parseRecipients(recipients)
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if name == "" {
				if name, err = onlyFileReplica(cfg); err != nil {
					return err
				}
			}
			var out []bundleJSON
			ws, err := bundle.Export(cmd.Context(), cfg, bundle.ExportOptions{Replica: name, Dir: dir, MaxBytes: maxBytes,
				Base: base, Recipients: rcpts, OnBundle: func(w bundle.Written) {
					if asJSON {
						j := toBundleJSON(w.Path, w.Header)
						j.Bytes, j.RawBytes, j.SHA256 = w.Bytes, w.Raw, w.SHA256
						out = append(out, j)
						return
					}
					what := fmt.Sprintf("%d events", w.Header.Events)
					if w.Header.Kind == bundle.KindBase {
						what = fmt.Sprintf("%d tables, %d rows", w.Header.Tables, w.Header.Rows)
					}
					fmt.Fprintf(a.stdout, "wrote %s: bundle %d (%s), %s, %s (%s before compression)\n", w.Path,
						w.Header.Seq, w.Header.Kind, what, sizeText(w.Bytes), sizeText(w.Raw))
				}})
			if err != nil {
				return err
			}
			if asJSON {
				if out == nil {
					out = []bundleJSON{}
				}
				return a.printJSON(out)
			}
			if len(ws) == 0 {
				fmt.Fprintf(a.stdout, "nothing to export for replica %s: no change committed since its last bundle\n", name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&replicas, "replica", nil, "the file replica `NAME` (default: the config's only file replica)")
	f.StringVar(&dir, "to", ".", "write the bundles into `DIR`")
	f.Int64Var(&maxBytes, "max-bytes", bundle.DefaultMaxBytes, "cut bundles at about this many bytes of content (before compression)")
	f.BoolVar(&base, "base", false, "first write a copy of every selected table: the bundle a new file replica starts from")
	f.StringArrayVar(&recipients, "recipient", nil, "encrypt to this age `RECIPIENT` (age1...), or to those in a recipients file (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print JSON: [{file, kind, set, replica, seq, from, to, events, tables, rows, bytes, raw_bytes, sha256, created_at}]")
	return cmd
}

func (a *app) importCommand() *cobra.Command {
	var replicas, identities []string
	var dsn, ackDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import BUNDLE... (--replica-dsn DSN | -c FILE [--replica NAME])",
		Short: "Apply bundle files to a file replica, each exactly once",
		Long: `Applies bundles written by pgreplica export to the replica database, each in
one transaction together with the replica's position (pgreplica.position),
in sequence order (the files may be given in any order). Every file's
checksum is checked before anything is applied.

A bundle applied already is skipped with a message (exit 0). A gap in the
sequence (bundle 5 before 4), a bundle of another set or replica, a damaged
or truncated file: refused with an error (exit 1), and nothing is changed.

The replica is --replica-dsn DSN, or the replica with a dsn in the config
(-c FILE; --replica NAME picks one), whose set name the bundles must carry;
the origin is never contacted. The first bundle is a base bundle (export
--base), which also installs pgreplica's bookkeeping schema on the replica.
With --ack-to DIR an acknowledgement file (the replica's new position) is
written there, for pgreplica ack on the origin's side.`,
		Example: `  pgreplica import /mnt/transfer/shop-dmz-*.bundle --replica-dsn "dbname=shop" --ack-to /mnt/transfer
  pgreplica import shop-dmz-000007-events.bundle --replica-dsn "dbname=shop" --identity ~/.config/pgreplica/dmz.key`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIdentities(identities)
			if err != nil {
				return err
			}
			opt := bundle.ImportOptions{Identities: ids, AckDir: ackDir}
			if dsn == "" {
				name, err := a.replicaSelection(replicas)
				if err != nil {
					return err
				}
				cfg, err := a.loadConfig()
				if err != nil {
					return withHint(err, "pgreplica import BUNDLE... --replica-dsn DSN")
				}
				r, err := importTarget(cfg, name)
				if err != nil {
					return err
				}
				dsn, opt.Set = r.DSN, cfg.Name
			} else if len(replicas) > 0 {
				return usagef("--replica-dsn names the replica: --replica is not needed")
			}
			if !asJSON {
				opt.Report = func(s string) { a.line(s) }
			}
			res, err := bundle.Import(cmd.Context(), dsn, args, opt)
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					Applied []bundleJSON `json:"applied"`
					Skipped []bundleJSON `json:"skipped"`
					Ack     string       `json:"ack,omitempty"`
				}{Applied: []bundleJSON{}, Skipped: []bundleJSON{}}
				for _, h := range res.Applied {
					out.Applied = append(out.Applied, toBundleJSON("", h))
				}
				for _, h := range res.Skipped {
					out.Skipped = append(out.Skipped, toBundleJSON("", h))
				}
				if res.Ack != nil {
					out.Ack = res.Ack.Path
				}
				return a.printJSON(out)
			}
			if res.Ack != nil {
				fmt.Fprintf(a.stdout, "wrote %s: the replica's position after bundle %d; bring it to the origin's side for pgreplica ack\n",
					res.Ack.Path, res.Ack.Header.Seq)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dsn, "replica-dsn", "", "the replica database `DSN` (libpq key/value string or postgres:// URL)")
	f.StringArrayVar(&replicas, "replica", nil, "with -c: the replica `NAME` whose dsn to use")
	f.StringArrayVar(&identities, "identity", nil, "decrypt with the age identities in `FILE` (repeatable)")
	f.StringVar(&ackDir, "ack-to", "", "write an acknowledgement file into `DIR` afterwards")
	f.BoolVar(&asJSON, "json", false, "print JSON: {applied: [...], skipped: [...], ack}")
	return cmd
}

func (a *app) ackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ack FILE...",
		Short: "Record a file replica's acknowledged position on the origin",
		Long: `Reads acknowledgement files written by pgreplica import --ack-to and records
on the origin the position each reports (rserv's MasterSync), after checking
its checksum, its set and that it is the end of a bundle exported for that
replica. The position only moves forward. pgreplica purge (and the engine's
periodic purge) may then remove the events the replica has applied; without
an acknowledgement they are kept.`,
		Example: "  pgreplica -c shop.yaml ack /mnt/transfer/shop-dmz-000007.ack && pgreplica -c shop.yaml purge",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			for _, p := range args {
				res, err := bundle.Ack(cmd.Context(), cfg, p)
				if err != nil {
					return err
				}
				if res.Moved {
					fmt.Fprintf(a.stdout, "replica %s: applied up to bundle %d, position %s recorded; pgreplica purge may now remove those events\n",
						res.Header.Replica, res.Header.Seq, res.Header.To.Snapshot)
				} else {
					fmt.Fprintf(a.stdout, "replica %s: bundle %d acknowledged; the origin had recorded this position (or a later one) already\n",
						res.Header.Replica, res.Header.Seq)
				}
			}
			return nil
		},
	}
}

// onlyFileReplica is the config's file replica when it has exactly one.
func onlyFileReplica(cfg *config.Config) (string, error) {
	var names []string
	for _, r := range cfg.Replicas {
		if r.File {
			names = append(names, r.Name)
		}
	}
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", withHint(errors.New("the config has no file replica"), "add a replica with file: true and no dsn under replicas: (see configs/example.yaml)")
	}
	return "", usagef("the config has several file replicas (%s): name one with --replica", strings.Join(names, ", "))
}

// importTarget is the replica of the config that import applies to: the
// named one, or the only one with a dsn.
func importTarget(cfg *config.Config, name string) (config.Replica, error) {
	if name != "" {
		r, err := cfg.Replica(name)
		if err != nil {
			return r, err
		}
		if r.DSN == "" {
			return r, withHint(fmt.Errorf("replica %s has no dsn in %s", name, cfg.Path),
				"at the replica's site, use a config whose replica has the dsn of the database there, or pass --replica-dsn DSN")
		}
		return r, nil
	}
	withDSN := cfg.Connected()
	switch len(withDSN) {
	case 1:
		return withDSN[0], nil
	case 0:
		return config.Replica{}, withHint(errors.New("no replica with a dsn in the config"), "pgreplica import BUNDLE... --replica-dsn DSN")
	}
	return config.Replica{}, usagef("the config has several replicas with a dsn: name one with --replica, or pass --replica-dsn DSN")
}

// parseRecipients reads age recipients: "age1..." values, or files of them.
func parseRecipients(values []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, v := range values {
		text := v
		if !strings.HasPrefix(v, "age1") {
			b, err := os.ReadFile(v)
			if err != nil {
				return nil, usagef("--recipient %s: neither an age recipient (age1...) nor a readable file: %v", v, errors.Unwrap(err))
			}
			text = string(b)
		}
		rs, err := age.ParseRecipients(strings.NewReader(text))
		if err != nil {
			return nil, usagef("--recipient %s: %v", v, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// parseIdentities reads age identity files.
func parseIdentities(files []string) ([]age.Identity, error) {
	var out []age.Identity
	for _, p := range files {
		f, err := os.Open(filepath.Clean(p))
		if err != nil {
			return nil, fmt.Errorf("--identity %s: %w", p, errors.Unwrap(err))
		}
		ids, err := age.ParseIdentities(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--identity %s: %w", p, err)
		}
		out = append(out, ids...)
	}
	return out, nil
}

// sizeText is a byte count for people: 812 B, 12.3 KiB, 4.0 MiB.
func sizeText(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}
