// Package pg connects to PostgreSQL and names tables the way pgreplica
// shows them. It is the thin layer over pgx that the rest of core shares.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MinVersion is the oldest server pgreplica supports (xid8, pg_snapshot).
const MinVersion = 130000

// Connect opens a connection for role ("origin", "replica reporting", ...)
// and checks the server version. Errors say which server and never contain
// a password.
func Connect(ctx context.Context, role, dsn string) (*pgx.Conn, error) {
	return ConnectAs(ctx, role, dsn, "pgreplica")
}

// ConnectAs is Connect with an application_name (unless the DSN sets one),
// which shows the session's purpose in pg_stat_activity. The connection has
// the DefaultNet bounds (connect timeout, TCP keepalives, tcp_user_timeout).
func ConnectAs(ctx context.Context, role, dsn, appName string) (*pgx.Conn, error) {
	return ConnectNet(ctx, role, dsn, appName, DefaultNet())
}

func connectConfig(ctx context.Context, role string, cfg *pgx.ConnConfig, appName string) (*pgx.Conn, error) {
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = appName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (%s): %s", role, Describe(cfg), connectReason(err))
	}
	if v, _ := strconv.Atoi(conn.PgConn().ParameterStatus("server_version_num")); v > 0 && v < MinVersion {
		conn.Close(ctx)
		return nil, &tooOldError{fmt.Sprintf("%s (%s) runs PostgreSQL %s; pgreplica needs 13 or newer",
			role, Describe(cfg), conn.PgConn().ParameterStatus("server_version"))}
	}
	return conn, nil
}

// Describe is user@host:port/dbname, without any password.
func Describe(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, host, cfg.Port, cfg.Database)
}

// connectReason keeps the useful end of pgx's connect error: the server's
// message (wrong password, no such database) or the dial error.
func connectReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return msg
}

// scrub removes the DSN (which may hold a password) from an error text.
func scrub(msg, dsn string) string {
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "<dsn>")
	}
	return msg
}

// Table is a schema-qualified table name.
type Table struct {
	Schema, Name string
}

// String is the table as an operator reads it: schema.table, each part
// quoted only where needed.
func (t Table) String() string { return quoteIfNeeded(t.Schema) + "." + quoteIfNeeded(t.Name) }

// Ident is the table's quoted SQL identifier.
func (t Table) Ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Name is an identifier as an operator reads it: quoted only where needed.
func Name(s string) string { return quoteIfNeeded(s) }

func quoteIfNeeded(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')) {
			plain = false
			break
		}
	}
	if plain && !reserved[s] {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

// reserved holds the keywords that PostgreSQL's quote_ident quotes; enough for
// display (SQL text always uses Ident).
var reserved = map[string]bool{
	"all": true, "analyse": true, "analyze": true, "and": true, "any": true, "array": true, "as": true,
	"asc": true, "asymmetric": true, "both": true, "case": true, "cast": true, "check": true,
	"collate": true, "column": true, "constraint": true, "create": true, "current_catalog": true,
	"current_date": true, "current_role": true, "current_time": true, "current_timestamp": true,
	"current_user": true, "default": true, "deferrable": true, "desc": true, "distinct": true, "do": true,
	"else": true, "end": true, "except": true, "false": true, "fetch": true, "for": true, "foreign": true,
	"from": true, "grant": true, "group": true, "having": true, "in": true, "initially": true,
	"intersect": true, "into": true, "lateral": true, "leading": true, "limit": true, "localtime": true,
	"localtimestamp": true, "not": true, "null": true, "offset": true, "on": true, "only": true, "or": true,
	"order": true, "placing": true, "primary": true, "references": true, "returning": true,
	"select": true, "session_user": true, "some": true, "symmetric": true, "system_user": true,
	"table": true, "then": true, "to": true, "trailing": true, "true": true, "union": true, "unique": true,
	"user": true, "using": true, "variadic": true, "when": true, "where": true, "window": true, "with": true,
}

// ParseTable reads "schema.table" as an operator types it: parts may be
// double-quoted ("My Schema"."Order""s"); an unquoted part is taken as is
// (not folded), and a bare name means schema public.
func ParseTable(s string) (Table, error) {
	parts, err := splitIdent(s)
	if err != nil {
		return Table{}, fmt.Errorf("table %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return Table{Schema: "public", Name: parts[0]}, nil
	case 2:
		return Table{Schema: parts[0], Name: parts[1]}, nil
	}
	return Table{}, fmt.Errorf("table %q: want schema.table", s)
}

func splitIdent(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	inQuote, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			inQuote = !inQuote
			quoted = true
		case c == '.' && !inQuote:
			if cur.Len() == 0 && !quoted {
				return nil, errors.New("empty name")
			}
			parts = append(parts, cur.String())
			cur.Reset()
			quoted = false
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if cur.Len() == 0 && !quoted {
		return nil, errors.New("empty name")
	}
	return append(parts, cur.String()), nil
}
