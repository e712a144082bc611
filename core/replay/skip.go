package replay

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// Skipped is an event the operator moved past on a replica.
type Skipped struct {
	Replica string
	EventID int64
	Txid    uint64
	Table   pg.Table
	Op      string
	Key     string // JSON, "" when none
	Data    string // JSON, "" when none
	Reason  string
	By      string
}

// Describe is the event in one line for the operator.
func (s Skipped) Describe() string {
	op := ""
	if s.Op != "" {
		op = opWords[s.Op[0]]
	}
	what := fmt.Sprintf("event %d (txid %d): %s", s.EventID, s.Txid, op)
	if s.Op != "E" && s.Op != "Q" {
		what += " " + s.Table.String()
	}
	if s.Key != "" {
		what += " key " + s.Key
	}
	return what
}

// applied reports whether position p covers event (id, txid).
func applied(p Position, id int64, txid uint64) bool {
	if p.Snapshot.Visible(txid) {
		return true
	}
	return !p.Target.IsZero() && p.Target.Visible(txid) && id <= p.LastID
}

// ReadEvent reads event id of the origin's log, for skip.
func ReadEvent(ctx context.Context, cfg *config.Config, replica string, id int64) (Skipped, error) {
	s := Skipped{Replica: replica, EventID: id}
	conn, err := pg.ConnectOrigin(ctx, cfg, "skip "+cfg.Name)
	if err != nil {
		return s, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var key, data *string
	err = conn.QueryRow(ctx, `SELECT txid::text::int8, schema_name, table_name, op::text, key::text, data::text
	                            FROM pgreplica.log WHERE id = $1`, id).
		Scan(&s.Txid, &s.Table.Schema, &s.Table.Name, &s.Op, &key, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("the origin's log has no event %d (purged, or never written)", id)
	}
	if err != nil {
		return s, fmt.Errorf("origin: read event %d: %w", id, err)
	}
	if key != nil {
		s.Key = *key
	}
	if data != nil {
		s.Data = *data
	}
	return s, nil
}

// Skip stores s in pgreplica.skipped on its replica: the engine moves past
// it (at its next attempt: pgreplica retry makes that now) and never
// applies it, until Reapply. An event the replica has applied already is
// refused.
func Skip(ctx context.Context, cfg *config.Config, s Skipped) error {
	r, err := cfg.Replica(s.Replica)
	if err != nil {
		return err
	}
	conn, err := pg.ConnectReplica(ctx, r, "skip "+cfg.Name)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	p, err := ReadPosition(ctx, conn, cfg.Name)
	if err != nil {
		return fmt.Errorf("replica %s: %w", r.Name, err)
	}
	if applied(p, s.EventID, s.Txid) {
		return fmt.Errorf("replica %s has applied event %d already: nothing to skip", r.Name, s.EventID)
	}
	_, err = conn.Exec(ctx, `INSERT INTO pgreplica.skipped (set_name, event_id, txid, schema_name, table_name, op, key, data, reason, skipped_by)
	                         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10)`,
		cfg.Name, s.EventID, fmt.Sprint(s.Txid), s.Table.Schema, s.Table.Name, s.Op, nullString(s.Key), nullString(s.Data), s.Reason, s.By)
	if pg.IsUniqueViolation(err) {
		return fmt.Errorf("replica %s: event %d is skipped already", r.Name, s.EventID)
	}
	if err != nil {
		return fmt.Errorf("replica %s: record the skipped event: %w", r.Name, err)
	}
	return nil
}

// Reapply applies a skipped event on its replica now, in one transaction
// that also records when (the operator fixed what made it fail). The
// replica must have moved past it.
func Reapply(ctx context.Context, cfg *config.Config, replica string, id int64) (Skipped, error) {
	s := Skipped{Replica: replica, EventID: id}
	r, err := cfg.Replica(replica)
	if err != nil {
		return s, err
	}
	conn, err := ConnectReplica(ctx, cfg, r, "reapply")
	if err != nil {
		return s, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var key, data *string
		var txid string
		var reapplied *string
		err := tx.QueryRow(ctx, `SELECT txid, schema_name, table_name, op::text, key::text, data::text, reason, skipped_by, reapplied_at::text
		                           FROM pgreplica.skipped WHERE set_name = $1 AND event_id = $2 FOR UPDATE`, cfg.Name, id).
			Scan(&txid, &s.Table.Schema, &s.Table.Name, &s.Op, &key, &data, &s.Reason, &s.By, &reapplied)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("replica %s has no skipped event %d", r.Name, id)
		}
		if err != nil {
			return fmt.Errorf("replica %s: read skipped event %d: %w", r.Name, id, err)
		}
		if reapplied != nil {
			return fmt.Errorf("replica %s: event %d was applied again already (%s)", r.Name, id, *reapplied)
		}
		fmt.Sscan(txid, &s.Txid)
		p, err := ReadPosition(ctx, tx, cfg.Name)
		if err != nil {
			return fmt.Errorf("replica %s: %w", r.Name, err)
		}
		if !applied(p, id, s.Txid) {
			return fmt.Errorf("replica %s has not moved past event %d yet: let it catch up first (pgreplica retry --replica %s)", r.Name, id, r.Name)
		}
		e := &event{ID: id, Txid: s.Txid, Table: s.Table, Op: s.Op[0]}
		if key != nil {
			s.Key, e.Key = *key, []byte(*key)
		}
		if data != nil {
			s.Data, e.Data = *data, []byte(*data)
		}
		a := newApplier(conn, cfg.Name, r.Name, ApplyExact)
		conflicts, err := a.applyWithScripts(ctx, tx, []*event{e}, a.applyExactIn)
		if err != nil {
			return err
		}
		if len(conflicts) > 0 {
			return fmt.Errorf("replica %s: event %d still conflicts (%s): nothing changed", r.Name, id, conflicts[0].Kind)
		}
		_, err = tx.Exec(ctx, `UPDATE pgreplica.skipped SET reapplied_at = now() WHERE set_name = $1 AND event_id = $2`, cfg.Name, id)
		return err
	})
	return s, err
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
