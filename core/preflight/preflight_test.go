package preflight

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgreplica/core/backup"
	"pgreplica/core/capture"
	"pgreplica/core/pg"
)

// The checks look at facts only: these tests need no PostgreSQL.

var (
	tOrders = pg.Table{Schema: "public", Name: "orders"}
	tLoose  = pg.Table{Schema: "public", Name: "loose"}
	now     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

func healthy() *Set {
	return &Set{
		Started: now,
		Origin: Facts{Node: "origin", Version: "16.4", Major: 16, Create: true, Now: now, DB: "shop", TriggerOK: 1,
			Tables: []capture.TableInfo{{Table: tOrders, Key: []string{"id"}, Status: capture.Missing}}},
		Replicas: []Facts{{Node: "replica r1", Version: "15.8", Major: 15, Create: true, Now: now, DB: "shop",
			Has: map[pg.Table]bool{tOrders: true}}},
		PgDump: backup.Client{Path: "/usr/bin/pg_dump", Major: 16},
	}
}

func TestHealthyIsOK(t *testing.T) {
	rep := Evaluate(healthy(), Checks)
	if rep.Status() != OK || len(rep.Findings) != 0 {
		t.Fatalf("status %s, findings %+v", rep.Status(), rep.Findings)
	}
	if f, w := rep.Blocking(); f != 0 || w != 0 {
		t.Fatalf("blocking %d %d", f, w)
	}
	var lines []string
	for _, r := range rep.Results {
		lines = append(lines, r.Severity.Label()+" "+r.Check+" "+strings.Join(r.Values, "|"))
	}
	want := []string{
		"OK reachable 16.4|15.8",
		"OK version >= 13 yes|yes",
		"OK CREATE on db yes|yes",
		"OK TRIGGER on 1/1 tables|n/a",
		"OK tables on replica 1 tables|all",
		"OK pg_dump client 16|n/a",
		"OK no primary key 0 tables|n/a",
		"OK capture installed not yet|",
		"OK clock skew 0 ms|0 ms",
	}
	if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("table:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if rep.PgDump != "/usr/bin/pg_dump" || rep.ServerMajor != 16 || rep.Database != "shop" {
		t.Fatalf("origin facts: %+v", rep)
	}
}

func finding(t *testing.T, rep Report, check string) Finding {
	t.Helper()
	for _, f := range rep.Findings {
		if f.Check == check {
			return f
		}
	}
	t.Fatalf("no %q finding in %+v", check, rep.Findings)
	return Finding{}
}

func TestBlockingFindings(t *testing.T) {
	cases := []struct {
		name    string
		change  func(s *Set)
		check   string
		node    string
		problem string
	}{
		{"replica unreachable", func(s *Set) {
			s.Replicas[0] = Facts{Node: "replica r1", Err: errors.New("connect to replica r1 (x): refused")}
		},
			"reachable", "replica r1", "connect to replica r1 (x): refused"},
		{"server too old", func(s *Set) {
			s.Replicas[0] = Facts{Node: "replica r1", Err: fmt.Errorf("replica r1 (x) runs PostgreSQL 12.1; pgreplica needs 13 or newer: %w", pg.ErrServerTooOld)}
		}, "version >= 13", "replica r1", "replica r1 (x) runs PostgreSQL 12.1; pgreplica needs 13 or newer: server older than PostgreSQL 13"},
		{"no CREATE", func(s *Set) { s.Replicas[0].Create = false }, "CREATE on db", "replica r1",
			"replica r1: the role lacks CREATE on database shop (pgreplica creates its schema there)"},
		{"no TRIGGER", func(s *Set) { s.Origin.TriggerOK = 0 }, "TRIGGER on", "origin", "the role may create triggers on 0 of 1 tables of the origin"},
		{"captured table missing", func(s *Set) {
			s.Origin.Tables[0].Status = capture.Installed
			s.Replicas[0].Has[tOrders] = false
		}, "tables on replica", "replica r1", "replica r1 lacks captured table public.orders: its changes cannot be applied there"},
		{"no replica", func(s *Set) { s.Replicas = nil }, "replicas", "", "no replica is configured"},
		{"stale capture", func(s *Set) { s.Origin.Tables[0].Status = capture.Stale; s.Origin.Capture = "2" }, "capture installed", "origin",
			"capture is stale for public.orders: the table changed (ALTER TABLE) since its capture was made, and a column added since is not replicated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := healthy()
			c.change(s)
			rep := Evaluate(s, Checks)
			if rep.Status() != Fail {
				t.Fatalf("status %s, want fail: %+v", rep.Status(), rep.Findings)
			}
			f := finding(t, rep, c.check)
			if f.Severity != Fail || f.Node != c.node || f.Problem != c.problem || (c.check != "replicas" && f.Try == "") {
				t.Fatalf("finding %+v\nwant node %q problem %q", f, c.node, c.problem)
			}
			if fails, _ := rep.Blocking(); fails == 0 {
				t.Fatal("Blocking counts no failed check")
			}
		})
	}
}

func TestWarningsDoNotBlock(t *testing.T) {
	s := healthy()
	s.Origin.Tables = append(s.Origin.Tables, capture.TableInfo{Table: tLoose, Status: capture.NoKey})
	s.Origin.TriggerOK = 2
	s.Replicas[0].Has[tLoose] = false
	s.Replicas[0].Now = now.Add(7 * time.Second)
	s.Replicas[0].Side = capture.ReplicaSide{Triggers: []string{"public.orders (last_updated)"}}
	s.PgDumpErr = errors.New("pg_dump 15 cannot dump a PostgreSQL 16 server (install postgresql-client-16)")
	tGone := pg.Table{Schema: "public", Name: "gone"}
	s.Origin.Tables = append(s.Origin.Tables, capture.TableInfo{Table: tGone, Key: []string{"id"}, Status: capture.Removed})
	s.Origin.TriggerOK = 3
	s.Replicas[0].Has[tGone] = true
	rep := Evaluate(s, Checks)
	if rep.Status() != Warn {
		t.Fatalf("status %s, want warn: %+v", rep.Status(), rep.Findings)
	}
	if f := finding(t, rep, "no primary key"); f.Table != "public.loose" || f.Severity != Warn {
		t.Fatalf("no key: %+v", f)
	}
	var sawMissing, sawTrigger bool
	for _, f := range rep.Findings {
		switch {
		case f.Check == "tables on replica" && f.Table == "public.loose" && f.Node == "replica r1":
			sawMissing = true
		case f.Check == "tables on replica" && f.Problem == "replica r1: the apply role cannot set session_replication_role: these triggers of the replica run on every applied change and may rewrite what the origin sent: public.orders (last_updated)":
			sawTrigger = true
		}
	}
	if !sawMissing || !sawTrigger {
		t.Fatalf("tables on replica: missing table %v, replica trigger %v: %+v", sawMissing, sawTrigger, rep.Findings)
	}
	if f := finding(t, rep, "clock skew"); f.Node != "replica r1" || !strings.Contains(f.Problem, "7s") {
		t.Fatalf("skew: %+v", f)
	}
	if f := finding(t, rep, "pg_dump client"); f.Try != "apt-get install postgresql-client-16, or skip the backup in step 2 if you have one" {
		t.Fatalf("pg_dump: %+v", f)
	}
	if rep.PgDump != "" {
		t.Fatal("an unsuitable pg_dump is offered")
	}
	if f := finding(t, rep, "capture installed"); f.Table != "public.gone" || f.Try != "pgreplica add-table --sync public.gone, or leave it out under tables.exclude" {
		t.Fatalf("removed table: %+v", f)
	}
	if fails, warns := rep.Blocking(); fails != 0 || warns != 5 {
		t.Fatalf("blocking %d, warnings %d", fails, warns)
	}
}

func TestOriginDownSkipsItsChecks(t *testing.T) {
	s := healthy()
	s.Origin = Facts{Node: "origin", Err: errors.New("connect to origin (x): refused")}
	rep := Evaluate(s, Checks)
	var checks []string
	for _, r := range rep.Results {
		checks = append(checks, r.Check)
	}
	if got := strings.Join(checks, ","); got != "reachable,version >= 13,CREATE on db,TRIGGER on,tables on replica" {
		t.Fatalf("checks with the origin down: %s", got)
	}
	if rep.Results[0].Problem != "connect to origin (x): refused" || !strings.HasPrefix(rep.Results[0].Try, "check the DSN (e edits it)") {
		t.Fatalf("reachable line: %+v", rep.Results[0])
	}
}
