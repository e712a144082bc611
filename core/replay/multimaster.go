package replay

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
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
	ranks     []string
}

func newMMRules(cfg *config.Config) *mmRules {
	if cfg.Source == "" {
		return nil
	}
	return &mmRules{policyFor: cfg.PolicyFor, ranks: cfg.Ranks()}
}

// statement is the call of the table's apply function for event e.
func (r *mmRules) statement(m *tableMeta, set string, e *event) (string, []any, error) {
	sql := fmt.Sprintf(`SELECT pgreplica.mm_apply_%d($1::text::"char", $2::jsonb, $3::jsonb, $4::jsonb, $5, $6, $7, $8, $9)`, m.relid)
	return sql, []any{string(e.Op), nullText(e.Key), nullText(e.Data), string(e.Meta), r.policyFor(e.Table.String()),
		r.ranks, set, e.ID, strconv.FormatUint(e.Txid, 10)}, nil
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
