package pg

import "testing"

func TestParseTableAndDisplay(t *testing.T) {
	cases := []struct {
		in, schema, name, display, ident string
	}{
		{"orders", "public", "orders", "public.orders", `"public"."orders"`},
		{"sales.orders", "sales", "orders", "sales.orders", `"sales"."orders"`},
		{`"My Schema"."Order ""x"""`, "My Schema", `Order "x"`, `"My Schema"."Order ""x"""`, `"My Schema"."Order ""x"""`},
		{`public."select"`, "public", "select", `public."select"`, `"public"."select"`},
		{`"a.b".c`, "a.b", "c", `"a.b".c`, `"a.b"."c"`},
		{"Ünï.Tab", "Ünï", "Tab", `"Ünï"."Tab"`, `"Ünï"."Tab"`},
	}
	for _, c := range cases {
		tb, err := ParseTable(c.in)
		if err != nil {
			t.Fatalf("ParseTable(%q): %v", c.in, err)
		}
		if tb.Schema != c.schema || tb.Name != c.name || tb.String() != c.display || tb.Ident() != c.ident {
			t.Errorf("ParseTable(%q) = %+v shown %s ident %s", c.in, tb, tb.String(), tb.Ident())
		}
	}
	for in, want := range map[string]string{
		"a.b.c": `table "a.b.c": want schema.table`,
		`"open`: `table "\"open": unterminated quote`,
		"a.":    `table "a.": empty name`,
		".b":    `table ".b": empty name`,
	} {
		if _, err := ParseTable(in); err == nil || err.Error() != want {
			t.Errorf("ParseTable(%q) error = %v, want %s", in, err, want)
		}
	}
}
