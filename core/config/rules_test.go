package config

import (
	"strings"
	"testing"
)

func TestLoadRules(t *testing.T) {
	path := writeConfig(t, `origin:
  dsn: host=db1
replicas:
  - name: eu
    dsn: host=db2
    tables:
      - table: public.customers
        where: "region = 'eu'"
        columns: {exclude: [ssn]}
        rename: {email: contact_email}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Replicas[0].Rule("public.customers")
	if r == nil || r.Where != "region = 'eu'" || r.Carries("ssn") || !r.Carries("email") || r.As("email") != "contact_email" || !r.Filtered() {
		t.Fatalf("rule = %+v", r)
	}
	if got := r.Place("where"); got != "pgreplica.yaml:8: replicas[0].tables[0].where: " {
		t.Errorf("Place(where) = %q", got)
	}
	if got := r.Place("columns"); got != "pgreplica.yaml:9: replicas[0].tables[0].columns: " {
		t.Errorf("Place(columns) = %q", got)
	}
	if got := r.Summary(); got != "where region = 'eu'; without ssn; email→contact_email" {
		t.Errorf("Summary() = %q", got)
	}
	h := r.Hash()
	r.Where = "region = 'us'"
	if h == "" || r.Hash() == h || (*TableRule)(nil).Hash() != "" {
		t.Errorf("Hash does not follow the rule: %q, %q", h, r.Hash())
	}
}

func TestRuleProblems(t *testing.T) {
	path := writeConfig(t, `origin:
  dsn: host=db1
replicas:
  - name: eu
    dsn: host=db2
    tables:
      - table: "public.*"
      - table: public.a
        columns: {include: [x], exclude: [y]}
      - table: public.a
        rename: {z: w, v: w}
        columns: {exclude: [z]}
      - where: "true"
  - name: dmz
    file: true
    tables:
      - table: public.a
`)
	_, err := Load(path)
	want := []string{
		`pgreplica.yaml:7: replicas[0].tables[0].table: one table as schema.table, not a pattern (got "public.*")`,
		`pgreplica.yaml:9: replicas[0].tables[1].columns: include and exclude together: use one of the two`,
		`pgreplica.yaml:10: replicas[0].tables[2].table: duplicate, already ruled by replicas[0].tables[1] (got "public.a")`,
		`pgreplica.yaml:11: replicas[0].tables[2].rename: columns v and z both renamed to w`,
		`pgreplica.yaml:11: replicas[0].tables[2].rename: column z is renamed but not carried (columns)`,
		`pgreplica.yaml:13: replicas[0].tables[3].table: missing: name the origin table as schema.table`,
		`pgreplica.yaml:17: replicas[1].tables[0]: a file replica takes every row and column: rules (tables:) are for replicas reached through a dsn`,
	}
	if got := errText(err); got != strings.Join(want, "\n") {
		t.Errorf("Load() error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
