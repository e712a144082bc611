package switchover

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"pgreplica/core/config"
)

const sample = `# the shop's set
name: shop
origin:
  dsn: "host=db1 dbname=shop"   # the origin
replicas:
  - name: reporting
    dsn: "host=db2 dbname=shop"
    protect: true
  - name: dr
    dsn: host=db3 dbname=shop
poll_interval: 500ms
`

func loadText(t *testing.T, text string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return c
}

// The switchover's rewrite swaps the DSNs of the origin and the replica
// (renamed with as), and keeps every other key and the comments; done
// twice it gives the first config back.
func TestSwappedConfig(t *testing.T) {
	out, err := swappedConfig([]byte(sample), "reporting", "reporting")
	if err != nil {
		t.Fatal(err)
	}
	c := loadText(t, string(out))
	if c.Origin.DSN != "host=db2 dbname=shop" || !reflect.DeepEqual(c.Replicas[0], config.Replica{Name: "reporting", DSN: "host=db1 dbname=shop", Protect: true}) ||
		c.Replicas[1].DSN != "host=db3 dbname=shop" || c.PollInterval.String() != "500ms" {
		t.Fatalf("swapped:\n%s", out)
	}
	for _, want := range []string{"# the shop's set", "# the origin"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("comment %q lost:\n%s", want, out)
		}
	}
	back, err := swappedConfig(out, "reporting", "reporting")
	if err != nil {
		t.Fatal(err)
	}
	if b := loadText(t, string(back)); b.Origin.DSN != "host=db1 dbname=shop" || b.Replicas[0].DSN != "host=db2 dbname=shop" {
		t.Fatalf("back:\n%s", back)
	}
	renamed, err := swappedConfig([]byte(sample), "dr", "old_shop")
	if err != nil {
		t.Fatal(err)
	}
	if c := loadText(t, string(renamed)); c.Origin.DSN != "host=db3 dbname=shop" || c.Replicas[1].Name != "old_shop" || c.Replicas[1].DSN != "host=db1 dbname=shop" {
		t.Fatalf("renamed:\n%s", renamed)
	}
	if _, err := swappedConfig([]byte(sample), "nope", "nope"); err == nil {
		t.Fatal("a replica that is not there was swapped")
	}
}

// The failover's rewrite names the replica's DSN as the origin and drops
// its entry.
func TestRemovedOriginConfig(t *testing.T) {
	out, err := removedOriginConfig([]byte(sample), "reporting")
	if err != nil {
		t.Fatal(err)
	}
	c := loadText(t, string(out))
	if c.Origin.DSN != "host=db2 dbname=shop" || len(c.Replicas) != 1 || c.Replicas[0].Name != "dr" || strings.Contains(string(out), "db1") {
		t.Fatalf("after failover:\n%s", out)
	}
	last, err := removedOriginConfig(out, "dr")
	if err != nil {
		t.Fatal(err)
	}
	if c := loadText(t, string(last)); c.Origin.DSN != "host=db3 dbname=shop" || len(c.Replicas) != 0 {
		t.Fatalf("after the last replica's failover:\n%s", last)
	}
}

// The step names are what PGREPLICA_TEST_DIE_AFTER_STEP and the messages
// use, in order.
func TestSteps(t *testing.T) {
	var names []string
	for _, s := range Steps() {
		names = append(names, s.String())
		if p, ok := ParseStep(s.String()); !ok || p != s {
			t.Fatalf("ParseStep(%s) = %v %v", s, p, ok)
		}
	}
	if got := strings.Join(names, " "); got != "fence catchup sequences promote config unfence verify" {
		t.Fatalf("steps %s", got)
	}
	if _, ok := ParseStep("bogus"); ok {
		t.Fatal("a bogus step parsed")
	}
}

// A replica that receives a projection (table rules) holds only part of
// the origin's data: neither a switchover nor a failover makes it the
// origin.
func TestReplicaWithRulesCannotBecomeOrigin(t *testing.T) {
	c := config.Default()
	c.Name, c.Origin.DSN = "shop", "host=db1"
	c.Replicas = []config.Replica{
		{Name: "eu", DSN: "host=db2", Tables: []config.TableRule{{Table: "public.customers", Where: "region = 'eu'"}}},
		{Name: "full", DSN: "host=db3"},
	}
	cfg := &c
	want := "replica eu has table rules (replicas[].tables: filters, columns or targets), so it holds only part of the origin's data and cannot become the origin"
	if _, err := swapped(cfg, "eu", "eu"); err == nil || err.Error() != "switchover --to eu: "+want {
		t.Fatalf("switchover to a ruled replica: %v", err)
	}
	if _, err := withoutOrigin(cfg, "eu"); err == nil || err.Error() != "failover --to eu: "+want {
		t.Fatalf("failover to a ruled replica: %v", err)
	}
	if _, err := swapped(cfg, "full", "full"); err != nil {
		t.Fatalf("switchover to a whole replica: %v", err)
	}
}

// A multi-master set has no origin role to move.
func TestMultiMasterHasNoSwitchover(t *testing.T) {
	c := config.Default()
	c.Name = "shop"
	c.Nodes = []config.Node{{Name: "a", DSN: "host=db1"}, {Name: "b", DSN: "host=db2"}}
	want := "set shop is a multi-master set (nodes:): every node already takes writes, there is no origin role to move"
	if _, err := swapped(&c, "b", "b"); err == nil || err.Error() != "switchover: "+want {
		t.Fatalf("switchover on nodes: %v", err)
	}
	if _, err := withoutOrigin(&c, "b"); err == nil || err.Error() != "failover: "+want {
		t.Fatalf("failover on nodes: %v", err)
	}
}
