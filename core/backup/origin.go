package backup

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

// ForOrigin plans a dump of cfg's origin into dir: it asks the server its
// version and database name, finds a pg_dump that can dump it and names
// the file (DefaultFile at now). The error says what is missing.
func ForOrigin(ctx context.Context, cfg *config.Config, dir string, now time.Time) (Options, Client, error) {
	conn, err := pg.ConnectOrigin(ctx, cfg, "backup")
	if err != nil {
		return Options{}, Client{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return Options{}, Client{}, fmt.Errorf("origin: %w", err)
	}
	num, _ := strconv.Atoi(conn.PgConn().ParameterStatus("server_version_num"))
	client, err := Find(ctx, num/10000)
	if err != nil {
		return Options{}, client, err
	}
	return Options{DSN: cfg.Origin.DSN, File: DefaultFile(dir, db, now), PgDump: client.Path}, client, nil
}
