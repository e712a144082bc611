package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgreplica/core/pgtest"
)

var shared pgtest.Shared

func TestMain(m *testing.M) { pgtest.Main(m, &shared) }

func TestRunWritesARestorableDump(t *testing.T) {
	ctx := context.Background()
	pair := shared.Get(t)
	dsn, _ := pair.DBs(t)
	db := dbName(dsn)
	if err := pair.Origin.Exec(ctx, db, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, 5000) i`); err != nil {
		t.Fatal(err)
	}
	client, err := Find(ctx, 15)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "shop.dump")
	var last Progress
	calls := 0
	err = Run(ctx, Options{DSN: dsn, File: file, PgDump: client.Path, Every: 10 * time.Millisecond}, func(p Progress) { last = p; calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.Bytes == 0 {
		t.Fatalf("last progress %+v", last)
	}
	st, err := os.Stat(file)
	if err != nil || st.Size() != last.Bytes {
		t.Fatalf("file %v size %d, progress %d", err, st.Size(), last.Bytes)
	}
	out, err := exec.Command(filepath.Join(filepath.Dir(client.Path), "pg_restore"), "--list", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TABLE public t") {
		t.Fatalf("pg_restore --list: %v\n%s", err, out)
	}
	// An existing file is never overwritten.
	if err := Run(ctx, Options{DSN: dsn, File: file, PgDump: client.Path}, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second run: %v", err)
	}
}

func TestRunCancelRemovesPartialFile(t *testing.T) {
	pair := shared.Get(t)
	dsn, _ := pair.DBs(t)
	client, err := Find(context.Background(), 15)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "cancel.dump")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Run(ctx, Options{DSN: dsn, File: file, PgDump: client.Path}, nil)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("partial file left: %v", err)
	}
}

func TestRunServerDownFailsAndRemovesFile(t *testing.T) {
	client, err := Find(context.Background(), 15)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := pgtest.FreePort()
	file := filepath.Join(t.TempDir(), "down.dump")
	err = Run(context.Background(), Options{DSN: "host=127.0.0.1 port=" + itoa(port) + " dbname=x user=postgres connect_timeout=2", File: file, PgDump: client.Path}, nil)
	if err == nil || !strings.Contains(err.Error(), "pg_dump failed") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file left: %v", err)
	}
}

func TestFindRefusesOlderClient(t *testing.T) {
	_, err := Find(context.Background(), 99)
	if err == nil || !strings.Contains(err.Error(), "cannot dump a PostgreSQL 99 server") {
		t.Fatalf("err = %v", err)
	}
}

func dbName(dsn string) string {
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "dbname=") {
			return strings.Trim(strings.TrimPrefix(f, "dbname="), "'")
		}
	}
	return ""
}

func itoa(n int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(n)) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}
