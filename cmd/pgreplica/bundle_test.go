package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"pgreplica/core/pgtest"
)

// TestCLIFileReplicaDMZ runs the DMZ workflow of the README with the
// binary's commands: install, export --base, export, import (the replica's
// site, given only the replica's DSN), status, ack, purge; a bundle applied
// twice is skipped (exit 0), a damaged one refused (exit 1).
func TestCLIFileReplicaDMZ(t *testing.T) {
	p := shared.Get(t)
	origin, replica := p.DBs(t)
	schema := `CREATE TABLE orders (id int PRIMARY KEY, note text, total numeric)`
	execSQL(t, origin, schema)
	execSQL(t, replica, schema)
	execSQL(t, origin, `INSERT INTO orders SELECT g, 'o' || g, g * 1.5 FROM generate_series(1, 100) g`)
	cfg := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: dmz\n    file: true\n", origin))
	transfer, back := t.TempDir(), t.TempDir()

	out, errOut, code := cli(t, "", "-c", cfg, "install")
	if code != 0 || !strings.HasSuffix(out, "\nreplica dmz: file replica, registered on the origin (its events are kept until acknowledged); start it with pgreplica export --base --replica dmz\n") {
		t.Fatalf("install: code %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = cli(t, "", "-c", cfg, "export", "--replica", "dmz", "--base", "--to", transfer)
	base := filepath.Join(transfer, "shop-dmz-000001-base.bundle")
	if code != 0 || !strings.HasPrefix(out, "wrote "+base+": bundle 1 (base), 1 tables, 100 rows, ") {
		t.Fatalf("export --base: code %d\n%s%s", code, out, errOut)
	}
	execSQL(t, origin, `UPDATE orders SET note = 'changed' WHERE id <= 10; DELETE FROM orders WHERE id > 95`)
	out, errOut, code = cli(t, "", "-c", cfg, "export", "--to", transfer)
	second := filepath.Join(transfer, "shop-dmz-000002-events.bundle")
	if code != 0 || !strings.HasPrefix(out, "wrote "+second+": bundle 2 (events), 15 events, ") {
		t.Fatalf("export: code %d\n%s%s", code, out, errOut)
	}
	out, _, code = cli(t, "", "-c", cfg, "export", "--to", transfer)
	if code != 0 || out != "nothing to export for replica dmz: no change committed since its last bundle\n" {
		t.Fatalf("export with nothing new: code %d\n%s", code, out)
	}
	out, _, code = cli(t, "", "-c", cfg, "export", "--to", transfer, "--json")
	if code != 0 || out != "[]\n" {
		t.Fatalf("export --json with nothing new: code %d\n%s", code, out)
	}

	// The replica's site.
	out, errOut, code = cli(t, "", "import", second, base, "--replica-dsn", replica, "--ack-to", back)
	ack := filepath.Join(back, "shop-dmz-000002.ack")
	re := regexp.MustCompile(`^bundle 1 \(base\) of set shop for replica dmz: applied \(1 tables, 100 rows in \S+\)
bundle 2 \(events\) of set shop for replica dmz: applied \(15 events in \S+\)
wrote ` + regexp.QuoteMeta(ack) + `: the replica's position after bundle 2; bring it to the origin's side for pgreplica ack
$`)
	if code != 0 || !re.MatchString(out) {
		t.Fatalf("import: code %d\n%s%s", code, out, errOut)
	}
	if o, r := pgtest.TableRows(t, connectT(t, origin), "orders"), pgtest.TableRows(t, connectT(t, replica), "orders"); strings.Join(o, "\n") != strings.Join(r, "\n") || len(o) != 95 {
		t.Fatalf("orders differ: origin %d rows, replica %d", len(o), len(r))
	}
	out, _, code = cli(t, "", "import", second, "--replica-dsn", replica)
	if code != 0 || !strings.HasPrefix(out, "bundle 2 (events) of set shop for replica dmz: applied already on ") {
		t.Fatalf("import again: code %d\n%s", code, out)
	}
	data, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged.bundle")
	if err := os.WriteFile(damaged, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = cli(t, "", "import", damaged, "--replica-dsn", replica)
	if code != 1 || !strings.HasPrefix(errOut, "Error: bundle "+damaged+" is damaged or truncated (") {
		t.Fatalf("import damaged: code %d\n%s", code, errOut)
	}

	// Back on the origin's side.
	out, _, code = cli(t, "", "-c", cfg, "status", "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Replicas) != 1 {
		t.Fatalf("status: code %d, %v\n%s", code, err, out)
	}
	if r := st.Replicas[0]; r.State != "file" || r.Pending == nil || *r.Pending != 15 || r.File == nil || r.File.LastBundle != 2 ||
		r.File.Unexported != 0 || r.File.Unacknowledged != 2 || r.File.AckedBundle != 0 {
		t.Fatalf("status before ack: %s", out)
	}
	out, _, code = cli(t, "", "-c", cfg, "purge")
	if code != 0 || !strings.HasPrefix(out, "purged 0 events") {
		t.Fatalf("purge before ack: code %d\n%s", code, out)
	}
	out, errOut, code = cli(t, "", "-c", cfg, "ack", ack)
	if code != 0 || !strings.HasPrefix(out, "replica dmz: applied up to bundle 2, position ") {
		t.Fatalf("ack: code %d\n%s%s", code, out, errOut)
	}
	out, _, code = cli(t, "", "-c", cfg, "purge")
	if code != 0 || !strings.HasPrefix(out, "purged 15 events") {
		t.Fatalf("purge after ack: code %d\n%s", code, out)
	}
	out, _, _ = cli(t, "", "-c", cfg, "status")
	if !regexp.MustCompile(`(?m)^dmz +file +0 `).MatchString(out) || !strings.Contains(out, "dmz: file replica · last bundle 2 (shop-dmz-000002-events.bundle) exported ") ||
		!strings.Contains(out, " · 0 events waiting for the next export · 0 bundles not acknowledged (last acknowledged: 2)") {
		t.Fatalf("status after ack:\n%s", out)
	}

	// Encrypted: to an age recipient, decrypted with the identity file.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "dmz.key")
	if err := os.WriteFile(idFile, []byte("# dmz\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	execSQL(t, origin, `INSERT INTO orders VALUES (1000, 'secret', 1)`)
	out, errOut, code = cli(t, "", "-c", cfg, "export", "--to", transfer, "--recipient", id.Recipient().String())
	third := filepath.Join(transfer, "shop-dmz-000003-events.bundle")
	if code != 0 || !strings.HasPrefix(out, "wrote "+third+": bundle 3 (events), 1 events, ") {
		t.Fatalf("export --recipient: code %d\n%s%s", code, out, errOut)
	}
	if raw, _ := os.ReadFile(third); !strings.HasPrefix(string(raw), "age-encryption.org/v1\n") || strings.Contains(string(raw), "secret") {
		t.Fatal("the bundle is not age-encrypted")
	}
	_, errOut, code = cli(t, "", "import", third, "--replica-dsn", replica)
	if code != 1 || errOut != "Error: bundle "+third+" is encrypted: pass --identity FILE with the key of one of its recipients\n" {
		t.Fatalf("import encrypted without identity: code %d\n%s", code, errOut)
	}
	out, errOut, code = cli(t, "", "import", third, "--replica-dsn", replica, "--identity", idFile)
	if code != 0 || !strings.HasPrefix(out, "bundle 3 (events) of set shop for replica dmz: applied (1 events in ") {
		t.Fatalf("import --identity: code %d\n%s%s", code, out, errOut)
	}
	if got := queryText(t, replica, "SELECT note FROM orders WHERE id = 1000"); got != "secret" {
		t.Fatalf("replica has %q", got)
	}

	// A file replica has no dsn: saying both is a config error with its line.
	bad := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: dmz\n    file: true\n    dsn: %q\n", origin, replica))
	_, errOut, code = cli(t, "", "-c", bad, "export")
	if code != 1 || errOut != "Error: "+bad+":7: replicas[0].dsn: a file replica (file: true) has no dsn: it is fed by bundle files; remove one of the two\n" {
		t.Fatalf("file and dsn: code %d\n%s", code, errOut)
	}
}

func connectT(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
