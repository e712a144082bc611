package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
)

// mmRules are a multi-master direction's conflict rules. Its events carry
// the row's versions (log.meta) and are applied through each table's apply
// function on the target (pgreplica.mm_apply_<oid>, sql/origin.sql), which
// finds conflicts, keeps the winner, keeps the row's version and records
// the conflict, all in the apply transaction.
type mmRules struct {
	policyFor func(table string) string
	kinds     string // conflicts.kinds as a jsonb object: kind -> policy
	ranks     []string
}

func newMMRules(cfg *config.Config) *mmRules {
	if cfg.Source == "" {
		return nil
	}
	kinds := []byte("{}")
	if len(cfg.Conflicts.Kinds) > 0 {
		kinds, _ = json.Marshal(cfg.Conflicts.Kinds) // a map of strings always marshals
	}
	return &mmRules{policyFor: cfg.PolicyFor, kinds: string(kinds), ranks: cfg.Ranks()}
}

// statement is the call of the table's apply function for event e.
func (r *mmRules) statement(m *tableMeta, set string, e *event) (string, []any, error) {
	sql := fmt.Sprintf(`SELECT pgreplica.mm_apply_%d($1::text::"char", $2::jsonb, $3::jsonb, $4::jsonb, $5, $6::jsonb, $7, $8, $9, $10)`, m.relid)
	return sql, []any{string(e.Op), nullText(e.Key), nullText(e.Data), string(e.Meta), r.policyFor(e.Table.String()),
		r.kinds, r.ranks, set, e.ID, strconv.FormatUint(e.Txid, 10)}, nil
}

// purgeLedger removes, on a multi-master node, the conflicts recorded more
// than retention ago (conflicts.retention), with the log's purge.
func purgeLedger(ctx context.Context, conn *pgx.Conn, retention time.Duration, log *slog.Logger) error {
	if retention <= 0 {
		return nil
	}
	tag, err := conn.Exec(ctx, "DELETE FROM pgreplica.conflict WHERE detected_at < now() - $1::interval",
		fmt.Sprintf("%d microseconds", retention.Microseconds()))
	if err != nil {
		return fmt.Errorf("purge the conflict ledger: %w", err)
	}
	if tag.RowsAffected() > 0 {
		log.Info("conflict ledger purged", "deleted", tag.RowsAffected(), "retention", retention.String())
	}
	return nil
}

// fastFor reports whether a batch goes set-based: never when an event
// carries old values to compare (conflicts.detect_drift).
func (a *applier) fastFor(events []*event) bool {
	if !a.fast(len(events)) {
		return false
	}
	for _, e := range events {
		if e.Meta != nil {
			return false
		}
	}
	return true
}

// driftCheck is the statement that finds whether the replica's row for an
// UPDATE event had, in the changed columns, values other than the origin's
// old ones (meta.old) and other than the new ones (both sides made the same
// change: no drift). ok is false when the event carries no old values.
func (a *applier) driftCheck(ctx context.Context, e *event) (string, []any, bool, error) {
	var meta struct {
		Old json.RawMessage `json:"old"`
	}
	if err := json.Unmarshal(e.Meta, &meta); err != nil || len(meta.Old) == 0 {
		return "", nil, false, nil
	}
	m, err := a.tableMeta(ctx, e.Table, e.ID)
	if err != nil {
		return "", nil, false, err
	}
	e.parse()
	old := parseImage(meta.Old)
	cols, err := a.columns(m, e.Table, old, e.ID)
	if err != nil {
		return "", nil, false, err
	}
	keyCols, err := a.columns(m, e.Table, e.key, e.ID)
	if err != nil || len(cols) == 0 {
		return "", nil, false, err
	}
	here, was, now := make([]string, len(cols)), make([]string, len(cols)), make([]string, len(cols))
	for i, c := range cols {
		id := pgx.Identifier{c}.Sanitize()
		here[i], was[i], now[i] = "t."+id, value(m, "o", c), value(m, "n", c)
		if m.cols[c].viaText { // json has no equality: compare the text
			here[i], was[i], now[i] = "t."+id+"::text", "o."+id, "n."+id
		}
	}
	sql := fmt.Sprintf(`SELECT 1 FROM %s AS t, jsonb_to_record($1::jsonb) AS %s, jsonb_to_record($2::jsonb) AS %s, jsonb_to_record($3::jsonb) AS %s
	                     WHERE %s AND ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL) AND ROW(%s, NULL) IS DISTINCT FROM ROW(%s, NULL)`,
		m.target, recordDef(m, "o", cols), recordDef(m, "n", cols), recordDef(m, "k", keyCols), keyMatch(m, keyCols),
		strings.Join(here, ", "), strings.Join(was, ", "), strings.Join(here, ", "), strings.Join(now, ", "))
	return sql, []any{string(meta.Old), string(e.Data), string(e.Key)}, true, nil
}
