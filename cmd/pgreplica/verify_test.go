package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

const verifySchema = `
CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12, 2), opened timestamptz);
CREATE TABLE "Odd ""Keys""" (k text, n int, v text, PRIMARY KEY (k, n));`

const verifyRows = `
INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.25, '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 3000) g;
INSERT INTO "Odd ""Keys""" SELECT (ARRAY['α', 'b b', 'C'])[1 + g % 3], g, 'v' FROM generate_series(1, 900) g;`

// sortedRows is every row of a table as text, sorted, read in UTC.
func sortedRows(t *testing.T, dsn, table string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	err = c.QueryRow(ctx, "SELECT set_config('TimeZone', 'UTC', false), set_config('extra_float_digits', '3', false)").Scan(&s, &s)
	if err == nil {
		err = c.QueryRow(ctx, "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '') FROM "+table+" AS x").Scan(&s)
	}
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return s
}

func TestCLIVerifyFindsRepairsAndExitCodes(t *testing.T) {
	cfg, origin, replica := dbs(t, verifySchema)
	execSQL(t, origin, verifyRows)
	execSQL(t, replica, verifyRows)
	if out, errOut, code := cli(t, "", "-c", cfg, "install"); code != 0 {
		t.Fatalf("install: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := cli(t, "", "-c", cfg, "verify")
	if code != 0 || errOut != "" || !strings.Contains(out, "r1 public.accounts: equal (3000 rows, ") ||
		!strings.Contains(out, "replica r1: 2 equal, 0 different (compared at origin snapshot ") {
		t.Fatalf("verify of equal tables: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	// A deleted row, an extra row and a changed value on the replica.
	execSQL(t, replica, `DELETE FROM accounts WHERE id = 17;
	                     INSERT INTO accounts (id, owner) VALUES (5000, 'stray');
	                     UPDATE accounts SET balance = balance + 0.01 WHERE id = 1234;
	                     UPDATE "Odd ""Keys""" SET v = 'w' WHERE k = 'b b' AND n = 301;`)
	out, errOut, code = cli(t, "", "-c", cfg, "verify")
	if code != 3 || errOut != "Error: verify found differences\n" {
		t.Fatalf("verify: code %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"r1 public.accounts: DIFFERENT: 1 missing, 1 extra, 1 different (origin 3000 rows, replica 3000, ",
		"    missing   (id)=(17)\n    extra     (id)=(5000)\n    different (id)=(1234)\n",
		`r1 public."Odd ""Keys""": DIFFERENT: 1 different (origin 900 rows, replica 900, `,
		"    different (k, n)=(b b, 301)\n",
		"replica r1: 0 equal, 2 different (compared at origin snapshot ",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("verify output lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = cli(t, "", "-c", cfg, "verify", "--json", "--table", "accounts")
	if code != 3 || errOut != "Error: verify found differences\n" {
		t.Fatalf("verify --json: code %d, stderr %q", code, errOut)
	}
	var res struct {
		Equal    bool `json:"equal"`
		Replicas []struct {
			Name   string `json:"name"`
			At     string `json:"at"`
			Equal  bool   `json:"equal"`
			Tables []struct {
				Table       string            `json:"table"`
				Equal       bool              `json:"equal"`
				OriginRows  int64             `json:"origin_rows"`
				ReplicaRows int64             `json:"replica_rows"`
				Missing     []json.RawMessage `json:"missing"`
				Extra       []json.RawMessage `json:"extra"`
				Different   []json.RawMessage `json:"different"`
			} `json:"tables"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if res.Equal || len(res.Replicas) != 1 || res.Replicas[0].Name != "r1" || res.Replicas[0].At == "" || len(res.Replicas[0].Tables) != 1 {
		t.Fatalf("verify --json: %s", out)
	}
	tb := res.Replicas[0].Tables[0]
	if tb.Table != "public.accounts" || tb.Equal || tb.OriginRows != 3000 || tb.ReplicaRows != 3000 ||
		compact(tb.Missing) != `[{"id":17}]` || compact(tb.Extra) != `[{"id":5000}]` || compact(tb.Different) != `[{"id":1234}]` {
		t.Fatalf("verify --json table: %s", out)
	}

	// --repair asks; without a terminal and without --yes it refuses and
	// changes nothing.
	before := sortedRows(t, replica, "accounts")
	_, errOut, code = cli(t, "", "-c", cfg, "verify", "--repair")
	if code != 2 || !strings.HasSuffix(errOut, "Error: Repair 4 row(s) on replica r1: refusing without --yes (standard input is not a terminal)\nRun 'pgreplica verify --help' for usage.\n") {
		t.Fatalf("verify --repair without --yes: code %d\n%s", code, errOut)
	}
	if sortedRows(t, replica, "accounts") != before {
		t.Fatal("verify --repair changed the replica without --yes")
	}

	out, errOut, code = cli(t, "", "-c", cfg, "verify", "--repair", "--yes")
	if code != 0 || !strings.Contains(out, "    repaired: deleted 1, inserted 1, updated 1\n") ||
		!strings.Contains(out, "    repaired: deleted 0, inserted 0, updated 1\n") {
		t.Fatalf("verify --repair --yes: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if out, errOut, code = cli(t, "", "-c", cfg, "verify"); code != 0 {
		t.Fatalf("verify after repair: code %d\n%s%s", code, out, errOut)
	}
	for _, tb := range []string{"accounts", `"Odd ""Keys"""`} {
		if sortedRows(t, origin, tb) != sortedRows(t, replica, tb) {
			t.Fatalf("%s differs row by row after the repair", tb)
		}
	}

	// A table being copied is not compared, and says so.
	execSQL(t, replica, `INSERT INTO pgreplica.table_state (set_name, schema_name, table_name, state) VALUES ('shop', 'public', 'accounts', 'copying')`)
	out, errOut, code = cli(t, "", "-c", cfg, "verify")
	if code != 3 || errOut != "Error: verify could not compare every table: some are being copied\n" ||
		!strings.Contains(out, "r1 public.accounts: not compared: being copied by pgreplica sync (state copying); verify it once it replicates\n") {
		t.Fatalf("verify of a table being copied: code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	execSQL(t, replica, `DELETE FROM pgreplica.table_state`)

	// Bad input: one clear line.
	_, errOut, code = cli(t, "", "-c", cfg, "verify", "--replica", "nope")
	if code != 1 || errOut != "Error: unknown replica \"nope\" (known: r1)\n" {
		t.Fatalf("unknown replica: code %d, %q", code, errOut)
	}
	_, errOut, code = cli(t, "", "-c", cfg, "verify", "--table", "public.missing")
	if code != 1 || errOut != "Error: origin has no table public.missing\n" {
		t.Fatalf("unknown table: code %d, %q", code, errOut)
	}
}

func compact(v []json.RawMessage) string {
	b, _ := json.Marshal(v)
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return err.Error()
	}
	return out.String()
}
