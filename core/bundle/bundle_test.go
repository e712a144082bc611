package bundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"pgreplica/core/config"
	"pgreplica/core/replay"
	"pgreplica/core/verify"
)

// TestBaseAndIncrementalUnderLoad builds a file replica from a base bundle
// and five incremental bundles exported while the origin is written to,
// with a long transaction that starts before one bundle and commits after
// the next: the replica ends equal to the origin, and the long
// transaction's events, written before others that an earlier bundle
// carries, arrive in a later bundle (commit order, not id order).
func TestBaseAndIncrementalUnderLoad(t *testing.T) {
	e := newEnv(t)
	l := startLoad(t, e.originDSN, 2)
	time.Sleep(100 * time.Millisecond)
	if l.txns.Load() == 0 {
		l.stop(t)
		t.Fatal("the load committed nothing")
	}

	bundles := e.export(ExportOptions{Base: true})
	if len(bundles) == 0 || bundles[0].Header.Kind != KindBase || bundles[0].Header.Seq != 1 {
		t.Fatalf("export --base wrote %+v, want the base bundle first", bundles)
	}
	if h := bundles[0].Header; h.Tables != 4 || h.Rows < 250 {
		t.Fatalf("base bundle header: %d tables, %d rows", h.Tables, h.Rows)
	}
	// zones, referenced by accounts, is loaded before it.
	order := fmt.Sprint(bundles[0].Header.Contents)
	if zi, ai := strings.Index(order, "zones"), strings.Index(order, "accounts"); zi < 0 || ai < 0 || zi > ai {
		t.Fatalf("base bundle contents %s: want zones before accounts", order)
	}

	// Under load, export --base goes on with the events committed during
	// the copy: base, then an events bundle.
	long := connect(t, e.originDSN)
	var afterCommit int64 // the bundle exported right after the long transaction committed
	var longTxid uint64
	var longID int64
	for i := 1; i <= 5; i++ {
		time.Sleep(150 * time.Millisecond)
		if i == 2 {
			exec(t, long, "BEGIN")
			exec(t, long, "INSERT INTO history (account, delta, amount) VALUES (1, 424242, 0.5)")
			if err := long.QueryRow(e.ctx, "SELECT pg_current_xact_id()::text::int8, currval('history_id_seq')").Scan(&longTxid, &longID); err != nil {
				t.Fatal(err)
			}
		}
		if i == 4 {
			exec(t, long, "COMMIT")
		}
		if i == 5 {
			l.stop(t)
		}
		ws := e.export(ExportOptions{})
		if len(ws) != 1 {
			t.Fatalf("export %d wrote %d bundles, want 1", i, len(ws))
		}
		if i == 4 {
			afterCommit = ws[0].Header.Seq
		}
		bundles = append(bundles, ws...)
	}
	for i, b := range bundles {
		if b.Header.Seq != int64(i+1) {
			t.Fatalf("bundle %d has sequence number %d", i+1, b.Header.Seq)
		}
		if i > 0 && !b.Header.From.Equal(bundles[i-1].Header.To) {
			t.Fatalf("bundle %d starts at %s, bundle %d ended at %s", i+1, b.Header.From, i, bundles[i-1].Header.To)
		}
	}

	// The long transaction's event is in the bundle exported after its
	// commit, although bundles before carry events with higher ids.
	where, maxEarlier := int64(0), int64(0)
	for _, b := range bundles[1:] {
		for _, c := range readChanges(t, b.Path) {
			if c.Txid == longTxid {
				where = b.Header.Seq
			}
			if where == 0 && c.ID > maxEarlier {
				maxEarlier = c.ID
			}
		}
	}
	if where != afterCommit {
		t.Fatalf("the long transaction's events are in bundle %d, want %d (exported after its commit)", where, afterCommit)
	}
	if maxEarlier <= longID {
		t.Fatalf("no earlier bundle carries an event after the long transaction's (max %d, long %d): the test proves nothing", maxEarlier, longID)
	}

	// The replica's site: the base alone, then the rest in any order.
	res := e.importFiles(ImportOptions{}, bundles[0])
	if len(res.Applied) != 1 {
		t.Fatalf("import base: %+v", res)
	}
	rest := append([]Written{}, bundles[1:]...)
	rest[0], rest[4] = rest[4], rest[0]
	res = e.importFiles(ImportOptions{Set: "shop"}, rest...)
	if len(res.Applied) != len(rest) || len(res.Skipped) != 0 {
		t.Fatalf("import: applied %d, skipped %d", len(res.Applied), len(res.Skipped))
	}
	e.requireEqual()
	if n := queryInt(t, e.replica, "SELECT count(*) FROM history WHERE delta = 424242"); n != 1 {
		t.Fatalf("the long transaction's row is on the replica %d times", n)
	}
	pos, err := replay.ReadPosition(e.ctx, e.replica, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got, end := PointOf(pos), bundles[len(bundles)-1].Header.To; !got.Equal(end) {
		t.Fatalf("replica at %s, last bundle ends at %s", got, end)
	}
	if n, err := replay.CountAfter(e.ctx, e.origin, pos); err != nil || n != 0 {
		t.Fatalf("origin has %d events after the replica's position (%v)", n, err)
	}

	// core/verify, afterwards, where the test can reach both databases.
	vcfg := *e.cfg
	vcfg.Replicas = []config.Replica{{Name: "dmz", DSN: e.replicaDSN}}
	vres, err := verify.Run(e.ctx, &vcfg, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !vres.Equal || len(vres.Replicas) != 1 || len(vres.Replicas[0].Tables) != 4 {
		t.Fatalf("verify: %+v", vres)
	}
}

// readChanges reads an events bundle's changes.
func readChanges(t *testing.T, path string) []replay.Change {
	t.Helper()
	r, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []replay.Change
	for {
		it, err := r.nextItem()
		if err != nil {
			t.Fatal(err)
		}
		if it.event == nil {
			return out
		}
		out = append(out, *it.event)
	}
}

// refusals builds a base and five bundles and imports the base and 1-3.
func refusals(t *testing.T) (*env, []Written) {
	e := newEnv(t)
	bundles := e.export(ExportOptions{Base: true})
	for i := 1; i <= 5; i++ {
		exec(t, e.origin, "UPDATE accounts SET balance = balance + $1 WHERE id <= 20", i)
		exec(t, e.origin, "INSERT INTO history (account, delta) VALUES ($1::int, $1::int)", i)
		bundles = append(bundles, e.export(ExportOptions{})...)
	}
	if len(bundles) != 6 {
		t.Fatalf("%d bundles, want 6", len(bundles))
	}
	e.importFiles(ImportOptions{}, bundles[:4]...)
	return e, bundles
}

func TestImportRefusesAndSkips(t *testing.T) {
	e, bundles := refusals(t)
	before := snapshotRows(t, e.replica)
	unchanged := func(what string) {
		t.Helper()
		if after := snapshotRows(t, e.replica); after != before {
			t.Fatalf("%s changed the replica", what)
		}
	}
	b3, b4, b5 := bundles[3], bundles[4], bundles[5]

	// Bundle 3 again: skipped, exit 0.
	var lines []string
	res, err := Import(e.ctx, e.replicaDSN, []string{b3.Path}, ImportOptions{Report: func(s string) { lines = append(lines, s) }})
	if err != nil || len(res.Skipped) != 1 || len(res.Applied) != 0 {
		t.Fatalf("import bundle 3 again: %+v, %v", res, err)
	}
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "bundle 4 (events) of set shop for replica dmz: applied already on ") ||
		!strings.HasSuffix(lines[0], "; skipped") {
		t.Fatalf("report: %q", lines)
	}
	unchanged("importing bundle 3 twice")

	// Bundle 5 before 4.
	_, err = Import(e.ctx, e.replicaDSN, []string{b5.Path}, ImportOptions{})
	want := fmt.Sprintf("%s is bundle 6 (events) of set shop for replica dmz, which does not follow bundle 4, the last applied here: import bundle 5 first; nothing was applied", b5.Path)
	if err == nil || err.Error() != want {
		t.Fatalf("import 5 before 4:\n got %v\nwant %s", err, want)
	}
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("not a RefusedError: %T", err)
	}
	unchanged("importing 5 before 4")

	// One byte changed.
	data, err := os.ReadFile(b4.Path)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "changed.bundle")
	flipped := append([]byte{}, data...)
	flipped[len(flipped)/2] ^= 0x01
	if err := os.WriteFile(changed, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Import(e.ctx, e.replicaDSN, []string{changed}, ImportOptions{})
	var damaged *DamagedError
	if !errors.As(err, &damaged) || !strings.HasPrefix(err.Error(), "bundle "+changed+" is damaged or truncated (") ||
		!strings.HasSuffix(err.Error(), "); nothing of it was applied: copy it again from the origin's export directory") {
		t.Fatalf("import a changed bundle: %v", err)
	}
	unchanged("importing a bundle with one byte changed")

	// Truncated.
	truncated := filepath.Join(t.TempDir(), "truncated.bundle")
	if err := os.WriteFile(truncated, data[:len(data)-7], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Import(e.ctx, e.replicaDSN, []string{truncated}, ImportOptions{})
	if !errors.As(err, &damaged) || !strings.HasPrefix(err.Error(), "bundle "+truncated+" is damaged or truncated (") {
		t.Fatalf("import a truncated bundle: %v", err)
	}
	unchanged("importing a truncated bundle")

	// A bundle of another set (exported from the same origin for a
	// replica of the same name).
	other := *e.cfg
	other.Name = "other"
	odir := t.TempDir()
	ows, err := Export(e.ctx, &other, ExportOptions{Replica: "dmz", Dir: odir})
	if err != nil || len(ows) != 1 {
		t.Fatalf("export set other: %v, %v", ows, err)
	}
	_, err = Import(e.ctx, e.replicaDSN, []string{ows[0].Path}, ImportOptions{})
	want = fmt.Sprintf("%s is bundle 1 (events) of set other for replica dmz, but this database receives set shop: wrong file?; nothing was applied", ows[0].Path)
	if err == nil || err.Error() != want {
		t.Fatalf("import another set's bundle:\n got %v\nwant %s", err, want)
	}
	_, err = Import(e.ctx, e.replicaDSN, []string{ows[0].Path}, ImportOptions{Set: "shop"})
	want = fmt.Sprintf("%s is bundle 1 (events) of set other for replica dmz, but this config's set is shop; nothing was applied", ows[0].Path)
	if err == nil || err.Error() != want {
		t.Fatalf("import another set's bundle with a config:\n got %v\nwant %s", err, want)
	}
	unchanged("importing another set's bundle")

	// A damaged file among good ones: nothing applied, not even the good.
	_, err = Import(e.ctx, e.replicaDSN, []string{b4.Path, b5.Path, truncated}, ImportOptions{})
	if !errors.As(err, &damaged) {
		t.Fatalf("import with a damaged file among them: %v", err)
	}
	unchanged("importing good bundles with a damaged one")

	// And then the right ones, in the right order.
	res = e.importFiles(ImportOptions{}, b5, b4)
	if len(res.Applied) != 2 {
		t.Fatalf("import 4 and 5: %+v", res)
	}
	e.requireEqual()
}

// TestAckThenPurge: the origin keeps every event a file replica has not
// acknowledged; after the acknowledgement of bundle 2 the purge removes
// exactly the events of bundles 1 and 2.
func TestAckThenPurge(t *testing.T) {
	e := newEnv(t)
	bundles := e.export(ExportOptions{Base: true})
	var want [3]int64
	for i := 1; i <= 3; i++ {
		exec(t, e.origin, "UPDATE accounts SET balance = balance + 1 WHERE id <= $1", 10*i)
		ws := e.export(ExportOptions{})
		bundles = append(bundles, ws...)
		want[i-1] = ws[0].Header.Events
	}
	logged := queryInt(t, e.origin, "SELECT count(*) FROM pgreplica.log")
	if logged != want[0]+want[1]+want[2] || want[0] != 10 || want[1] != 20 {
		t.Fatalf("log has %d events, bundles %v", logged, want)
	}
	purge := func() replay.PurgeNowResult {
		t.Helper()
		res, err := replay.PurgeNow(e.ctx, e.cfg, func(name string, err error) { t.Fatalf("purge: %s: %v", name, err) })
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Without an acknowledgement nothing is purged, applied or not.
	ackDir := t.TempDir()
	res := e.importFiles(ImportOptions{AckDir: ackDir}, bundles[:3]...)
	if res.Ack == nil || res.Ack.Header.Seq != 3 || !res.Ack.Header.To.Equal(bundles[2].Header.To) {
		t.Fatalf("acknowledgement: %+v", res.Ack)
	}
	if p := purge(); p.Truncated+p.Deleted != 0 || p.Kept != logged {
		t.Fatalf("purge without an ack: %+v", p)
	}
	ack, err := Ack(e.ctx, e.cfg, res.Ack.Path)
	if err != nil || !ack.Moved {
		t.Fatalf("ack: %+v, %v", ack, err)
	}
	if p := purge(); p.Truncated+p.Deleted != want[0]+want[1] || p.Kept != want[2] {
		t.Fatalf("purge after the ack of bundle 3: %+v, want %d removed and %d kept", p, want[0]+want[1], want[2])
	}
	// The same acknowledgement again changes nothing.
	if ack, err := Ack(e.ctx, e.cfg, res.Ack.Path); err != nil || ack.Moved {
		t.Fatalf("ack again: %+v, %v", ack, err)
	}
	// The remaining bundle is still there to export... and to import.
	e.importFiles(ImportOptions{}, bundles[3])
	e.requireEqual()

	// An acknowledgement is not a bundle, and a bundle is not an ack.
	if _, err := Import(e.ctx, e.replicaDSN, []string{res.Ack.Path}, ImportOptions{}); err == nil ||
		err.Error() != res.Ack.Path+" is an acknowledgement, not a bundle: give it to pgreplica ack on the origin; nothing was applied" {
		t.Fatalf("import an ack: %v", err)
	}
	if _, err := Ack(e.ctx, e.cfg, bundles[3].Path); err == nil ||
		err.Error() != bundles[3].Path+" is bundle 4 (events) of set shop for replica dmz, not an acknowledgement: import it on the replica (pgreplica import)" {
		t.Fatalf("ack a bundle: %v", err)
	}
}

// TestCutAtMaxBytesAndEncrypted: a big interval is cut into bundles at
// --max-bytes (positions in the middle of an interval), encrypted to an age
// recipient; without the identity import refuses, with it the replica ends
// equal.
func TestCutAtMaxBytesAndEncrypted(t *testing.T) {
	e := newEnv(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rcpt := []age.Recipient{id.Recipient()}
	bundles := e.export(ExportOptions{Base: true, Recipients: rcpt})
	exec(t, e.origin, "INSERT INTO history (account, delta, doc) SELECT g % 200 + 1, g, jsonb_build_object('g', g) FROM generate_series(1, 3000) g")
	exec(t, e.origin, "UPDATE accounts SET balance = balance - 1")
	ws := e.export(ExportOptions{MaxBytes: 64 << 10, Recipients: rcpt})
	if len(ws) < 4 {
		t.Fatalf("%d bundles for 3200 events at 64 KiB, want several", len(ws))
	}
	var events int64
	for _, w := range ws[:len(ws)-1] {
		if w.Header.To.Target.IsZero() || w.Header.To.LastID == 0 {
			t.Fatalf("bundle %d ends at %s: want a point inside the interval", w.Header.Seq, w.Header.To)
		}
		events += w.Header.Events
	}
	if last := ws[len(ws)-1]; !last.Header.To.Target.IsZero() || events+last.Header.Events != 3200 {
		t.Fatalf("last bundle ends at %s; %d events in all", last.Header.To, events+last.Header.Events)
	}
	bundles = append(bundles, ws...)
	if _, err := Import(e.ctx, e.replicaDSN, paths(bundles[:1]), ImportOptions{}); err == nil ||
		err.Error() != "bundle "+bundles[0].Path+" is encrypted: pass --identity FILE with the key of one of its recipients" {
		t.Fatalf("import encrypted without identity: %v", err)
	}
	e.importFiles(ImportOptions{Identities: []age.Identity{id}, BatchEvents: 700}, bundles...)
	e.requireEqual()
	// Nothing new: nothing written.
	if ws := e.export(ExportOptions{}); len(ws) != 0 {
		t.Fatalf("export with nothing new wrote %d bundles", len(ws))
	}
}

func TestExportAndImportErrors(t *testing.T) {
	e := newEnv(t)
	exec(t, e.origin, "UPDATE accounts SET balance = 1 WHERE id = 1")
	ws := e.export(ExportOptions{}) // from the position install registered
	if len(ws) != 1 || ws[0].Header.Kind != KindEvents || ws[0].Header.Events != 1 {
		t.Fatalf("export without a base: %+v", ws)
	}
	// The replica has no base: nothing to apply the events to.
	_, err := Import(e.ctx, e.replicaDSN, paths(ws), ImportOptions{})
	want := ws[0].Path + " is bundle 1 (events) of set shop for replica dmz, but this database has no position for set shop: import the set's base bundle first (pgreplica export --base); nothing was applied"
	if err == nil || err.Error() != want {
		t.Fatalf("import events without a base:\n got %v\nwant %s", err, want)
	}
	if n := queryInt(t, e.replica, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgreplica'"); n != 0 {
		t.Fatal("a refused import left pgreplica's schema on the replica")
	}

	exec(t, e.origin, "DELETE FROM pgreplica.replica; DELETE FROM pgreplica.bundle_export")
	_, err = Export(e.ctx, e.cfg, ExportOptions{Replica: "dmz", Dir: e.dir})
	if err == nil || err.Error() != "file replica dmz has no bundle yet and no position on the origin: start it with pgreplica export --base --replica dmz" {
		t.Fatalf("export of an unregistered replica: %v", err)
	}
	net := *e.cfg
	net.Replicas = []config.Replica{{Name: "reporting", DSN: e.replicaDSN}}
	_, err = Export(e.ctx, &net, ExportOptions{Replica: "reporting", Dir: e.dir})
	if err == nil || !strings.HasPrefix(err.Error(), "replica reporting is not a file replica") {
		t.Fatalf("export for a connected replica: %v", err)
	}
	_, err = Export(e.ctx, e.cfg, ExportOptions{Replica: "dmz", Dir: filepath.Join(e.dir, "nope")})
	if err == nil || err.Error() != "export directory "+filepath.Join(e.dir, "nope")+": not a directory" {
		t.Fatalf("export to a missing directory: %v", err)
	}
}
