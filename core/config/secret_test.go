package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestFlagDSN(t *testing.T) {
	t.Setenv("PGR_TEST_DSN", "host=db1 password=s3cret")
	file := filepath.Join(t.TempDir(), "origin.dsn")
	os.WriteFile(file, []byte("  host=db2 dbname=shop\n"), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	cases := []struct {
		in, dsn string
		literal bool
		err     string
	}{
		{"env:PGR_TEST_DSN", "host=db1 password=s3cret", false, ""},
		{"@" + file, "host=db2 dbname=shop", false, ""},
		{"host=db3 password=x", "host=db3 password=x", true, ""},
		{"postgres://u:pw@db4/shop", "postgres://u:pw@db4/shop", true, ""},
		{"host=db5 dbname=shop", "host=db5 dbname=shop", false, ""},
		{"env:PGR_TEST_UNSET", "", false, "--origin env:PGR_TEST_UNSET: the environment variable PGR_TEST_UNSET is not set"},
		{"@/nonexistent/dsn", "", false, "--origin @/nonexistent/dsn: no such file or directory"},
		{"@" + empty, "", false, "--origin @" + empty + ": the file is empty"},
	}
	for _, c := range cases {
		dsn, literal, err := FlagDSN("--origin", c.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if dsn != c.dsn || literal != c.literal || got != c.err {
			t.Errorf("FlagDSN(%q) = %q, %v, %q; want %q, %v, %q", c.in, dsn, literal, got, c.dsn, c.literal, c.err)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	path := writeConfig(t, "name: shop\norigin: {dsn: host=db1}\nreplicas:\n  - {name: reporting, dsn: host=db2}\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=/x", "PGREPLICA_ORIGIN=host=o1 password=p", "PGREPLICA_REPLICA_REPORTING=host=r1 password=q"}
	if err := c.ApplyEnv(env); err != nil {
		t.Fatal(err)
	}
	if c.Origin.DSN != "host=o1 password=p" || c.Replicas[0].DSN != "host=r1 password=q" {
		t.Fatalf("after ApplyEnv: %+v", c)
	}
	err = c.ApplyEnv([]string{"PGREPLICA_REPLICA_OTHER=host=r9"})
	if err == nil || err.Error() != `PGREPLICA_REPLICA_OTHER: `+path+` has no replica "other"` {
		t.Fatalf("unknown replica in the environment: %v", err)
	}
	if got := EnvReplicas([]string{"PGREPLICA_REPLICA_B=host=b", "X=1", "PGREPLICA_REPLICA_A=host=a", "PGREPLICA_REPLICA_C="}); !reflect.DeepEqual(got,
		[]Replica{{Name: "a", DSN: "host=a"}, {Name: "b", DSN: "host=b"}}) {
		t.Fatalf("EnvReplicas = %+v", got)
	}
}
