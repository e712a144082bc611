package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestCLITypos: an include pattern that matches nothing warns on tables
// and fails install; add-table and remove-table of a table the origin
// lacks say so, with "did you mean" for a case or quoting mismatch; a
// table without a key is refused.
func TestCLITypos(t *testing.T) {
	schema := `CREATE TABLE inventory (id int PRIMARY KEY); CREATE SCHEMA sales;
	           CREATE TABLE sales."Customers" (id int PRIMARY KEY); CREATE TABLE audit (a int)`
	cfgOK, origin, replica := dbs(t, schema)
	typo := writeConfig(t, fmt.Sprintf("name: shop\norigin:\n  dsn: %q\nreplicas:\n  - name: r1\n    dsn: %q\ntables:\n  include: [\"public.inventroy\"]\n", origin, replica))
	const msg = `tables.include "public.inventroy" matches no table of the origin (did you mean public.inventory?)`
	_, errOut, code := cli(t, "", "-c", typo, "tables")
	if code != 0 || !strings.Contains(errOut, "warning: "+msg) {
		t.Fatalf("tables with a typo: code %d\n%s", code, errOut)
	}
	_, errOut, code = cli(t, "", "-c", typo, "install")
	if code != exitErr || !strings.HasPrefix(errOut, "Error: "+msg+"; nothing was installed\nTry: fix tables.include") {
		t.Fatalf("install with a typo: code %d\n%s", code, errOut)
	}
	if left := queryText(t, origin, pgreplicaObjects); left != "" {
		t.Fatalf("install with a typo left %s", left)
	}

	if _, errOut, code := cli(t, "", "-c", cfgOK, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"add-table", "public.nosuchtable"}, "Error: no table public.nosuchtable on the origin\n"},
		{[]string{"add-table", "public.inventroy"}, "Error: no table public.inventroy on the origin (did you mean public.inventory?)\n"},
		{[]string{"add-table", "sales.customers"}, `Error: no table sales.customers on the origin (did you mean sales."Customers"? names are case-sensitive: quote them as in SQL, 'sales."Customers"')` + "\n"},
		{[]string{"remove-table", "--yes", "sales.customers"}, `Error: no table sales.customers on the origin (did you mean sales."Customers"? names are case-sensitive: quote them as in SQL, 'sales."Customers"')` + "\n"},
		{[]string{"add-table", "public.audit"}, "Error: public.audit has no primary key: UPDATE and DELETE could not be matched on a replica, so it cannot be captured (add a primary key first)\n"},
	}
	for _, c := range cases {
		out, errOut, code := cli(t, "", append([]string{"-c", cfgOK}, c.args...)...)
		if code != exitErr || errOut != c.want || out != "" {
			t.Errorf("%v: code %d\nstdout %q\nstderr %q\nwant   %q", c.args, code, out, errOut, c.want)
		}
	}
	if _, errOut, code := cli(t, "", "-c", cfgOK, "add-table", `sales."Customers"`); code != 0 {
		t.Fatalf(`add-table sales."Customers": %d %s`, code, errOut)
	}
}
