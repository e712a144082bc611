package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestLoadFileReplica(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pgreplica.yaml")
	yaml := "name: shop\norigin:\n  dsn: host=db1\nreplicas:\n  - name: reporting\n    dsn: host=db2\n  - name: dmz\n    file: true\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Replicas) != 2 || !reflect.DeepEqual(c.Replicas[1], Replica{Name: "dmz", File: true}) {
		t.Fatalf("replicas = %+v", c.Replicas)
	}
	if got := c.Connected(); len(got) != 1 || got[0].Name != "reporting" {
		t.Fatalf("Connected() = %+v", got)
	}
	if _, err := c.FileReplica("dmz"); err != nil {
		t.Fatal(err)
	}
	_, err = c.FileReplica("reporting")
	want := "replica reporting is not a file replica: it is reached through its dsn (the engine feeds it); set file: true and remove its dsn to feed it with bundles"
	if err == nil || err.Error() != want {
		t.Fatalf("FileReplica(reporting) = %v, want %q", err, want)
	}
	if _, err := c.FileReplica("nope"); err == nil || err.Error() != `unknown replica "nope" (known: reporting, dmz)` {
		t.Fatalf("FileReplica(nope) = %v", err)
	}
}
