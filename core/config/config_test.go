package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes content to pgreplica.yaml in a new temporary directory
// and makes it the working directory, so that messages show the path as a
// user would type it.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("pgreplica.yaml", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return "pgreplica.yaml"
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestDefault(t *testing.T) {
	got := Default()
	want := Config{
		Name:         "default",
		Tables:       Tables{Include: []string{"*.*"}},
		PollInterval: 2 * time.Second,
		Batch:        Batch{MaxEvents: 5000, MaxBytes: 16 << 20},
		Purge:        Purge{Interval: time.Minute},
		Alerts:       defaultAlerts(),
		Timeouts:     Timeouts{Connect: 10 * time.Second, DeadPath: 30 * time.Second, OrphanGrace: 30 * time.Second},
		Serve:        Serve{SSH: SSH{HostKey: "ssh_host_ed25519_key", IdleTimeout: 30 * time.Minute, MaxSessions: 10}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v, want %+v", got, want)
	}

	// Defaults do not share state.
	got.Tables.Include[0] = "changed"
	if Default().Tables.Include[0] != "*.*" {
		t.Error("Default() shares its include slice between calls")
	}
}

func TestLoadKeepsDefaults(t *testing.T) {
	path := writeConfig(t, "origin:\n  dsn: host=db1\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Origin.DSN = "host=db1"
	want.Path = "pgreplica.yaml"
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Load() = %+v, want %+v", *c, want)
	}
}

func TestLoadValues(t *testing.T) {
	path := writeConfig(t, `
name: shop
origin:
  dsn: "host=db1 dbname=shop"
replicas:
  - name: reporting
    dsn: "postgres://replicator@10.0.0.2/shop"
tables:
  include: ["public.*"]
  exclude: ["public.audit_*"]
poll_interval: 5s
batch:
  max_events: 100
  max_bytes: 1024
purge:
  interval: 1m30s
control:
  socket: /run/pgreplica.sock
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Name:         "shop",
		Origin:       Endpoint{DSN: "host=db1 dbname=shop"},
		Replicas:     []Replica{{Name: "reporting", DSN: "postgres://replicator@10.0.0.2/shop"}},
		Tables:       Tables{Include: []string{"public.*"}, Exclude: []string{"public.audit_*"}},
		PollInterval: 5 * time.Second,
		Batch:        Batch{MaxEvents: 100, MaxBytes: 1024},
		Purge:        Purge{Interval: 90 * time.Second},
		Control:      Control{Socket: "/run/pgreplica.sock"},
		Alerts:       defaultAlerts(),
		Timeouts:     Timeouts{Connect: 10 * time.Second, DeadPath: 30 * time.Second, OrphanGrace: 30 * time.Second},
		Serve:        Default().Serve,
		Path:         "pgreplica.yaml",
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", *c, want)
	}
}

func TestLoadDurations(t *testing.T) {
	tests := []struct {
		yaml      string
		poll      time.Duration
		purgeEach time.Duration
	}{
		{"poll_interval: 500ms", 500 * time.Millisecond, time.Minute},
		{"poll_interval: 1h2m3s", time.Hour + 2*time.Minute + 3*time.Second, time.Minute},
		{"poll_interval: \"10s\"", 10 * time.Second, time.Minute},
		{"purge: {interval: 0}", 2 * time.Second, 0},
		{"purge: {interval: 0s}", 2 * time.Second, 0},
		{"purge: {interval: 24h}", 2 * time.Second, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			c, err := Load(writeConfig(t, "origin: {dsn: host=db1}\n"+tt.yaml+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if c.PollInterval != tt.poll || c.Purge.Interval != tt.purgeEach {
				t.Errorf("poll_interval %s, purge.interval %s; want %s, %s", c.PollInterval, c.Purge.Interval, tt.poll, tt.purgeEach)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{
			name: "unknown key",
			yaml: "name: shop\norigin: {dsn: host=db1}\nreplcas:\n  - name: r\n",
			want: `pgreplica.yaml:3: unknown key "replcas"`,
		},
		{
			name: "unknown nested key",
			yaml: "origin:\n  dsn: host=db1\nbatch:\n  max_event: 10\n",
			want: `pgreplica.yaml:4: unknown key "batch.max_event"`,
		},
		{
			name: "unknown key in a list item",
			yaml: "origin: {dsn: host=db1}\nreplicas:\n  - name: r\n    dns: host=db2\n",
			want: `pgreplica.yaml:4: unknown key "replicas[0].dns"`,
		},
		{
			name: "invalid YAML",
			yaml: "name: shop\n  origin: x\n",
			want: "pgreplica.yaml:2: invalid YAML: mapping values are not allowed in this context",
		},
		{
			name: "invalid YAML without a line",
			yaml: "name: \"shop\x01\"\n",
			want: "pgreplica.yaml: invalid YAML: control characters are not allowed",
		},
		{
			name: "empty file",
			yaml: "",
			want: "pgreplica.yaml: empty config",
		},
		{
			name: "only comments",
			yaml: "# nothing yet\n\n",
			want: "pgreplica.yaml: empty config",
		},
		{
			name: "null document",
			yaml: "~\n",
			want: "pgreplica.yaml: empty config",
		},
		{
			name: "not a mapping",
			yaml: "- name: shop\n",
			want: "pgreplica.yaml:1: want a mapping of keys such as name:, origin: and replicas: (got a list)",
		},
		{
			name: "two documents",
			yaml: "origin: {dsn: host=db1}\n---\nname: shop\n",
			want: "pgreplica.yaml:2: a second YAML document, want one",
		},
		{
			name: "duplicate key",
			yaml: "name: shop\norigin: {dsn: host=db1}\nname: other\n",
			want: `pgreplica.yaml:3: duplicate key "name" (first at line 1)`,
		},
		{
			name: "missing origin",
			yaml: "name: shop\n",
			want: "pgreplica.yaml: origin.dsn: missing",
		},
		{
			name: "origin without dsn",
			yaml: "name: shop\norigin:\n  dns: x\n",
			want: `pgreplica.yaml:3: unknown key "origin.dns"`,
		},
		{
			name: "empty origin",
			yaml: "name: shop\norigin: {}\n",
			want: "pgreplica.yaml:2: origin.dsn: missing",
		},
		{
			name: "replica without dsn",
			yaml: "name: shop\norigin:\n  dsn: host=db1\nreplicas:\n  - name: reporting\n",
			want: "pgreplica.yaml:5: replicas[0].dsn: missing",
		},
		{
			name: "file replica with a dsn",
			yaml: "name: shop\norigin:\n  dsn: host=db1\nreplicas:\n  - name: dmz\n    file: true\n    dsn: host=db2\n",
			want: "pgreplica.yaml:7: replicas[0].dsn: a file replica (file: true) has no dsn: it is fed by bundle files; remove one of the two",
		},
		{
			name: "file not a boolean",
			yaml: "name: shop\norigin:\n  dsn: host=db1\nreplicas:\n  - name: dmz\n    file: often\n",
			want: `pgreplica.yaml:6: replicas[0].file: want true or false (got "often")`,
		},
		{
			name: "bad pattern",
			yaml: "name: shop\norigin:\n  dsn: host=db1\ntables:\n  exclude: []\n  include:\n    - public.*\n    - \"public.[\"\n",
			want: `pgreplica.yaml:8: tables.include[1]: bad pattern "public.[": syntax error in pattern`,
		},
		{
			name: "pattern without schema",
			yaml: "origin: {dsn: host=db1}\ntables:\n  include: [orders]\n",
			want: `pgreplica.yaml:3: tables.include[0]: pattern must be schema.table (got "orders")`,
		},
		{
			name: "bad duration",
			yaml: "origin: {dsn: host=db1}\npoll_interval: soon\n",
			want: `pgreplica.yaml:2: poll_interval: want a duration such as 500ms, 5s, 1m or 1h30m (got "soon")`,
		},
		{
			name: "duration without unit",
			yaml: "origin: {dsn: host=db1}\npoll_interval: 5\n",
			want: `pgreplica.yaml:2: poll_interval: want a duration such as 500ms, 5s, 1m or 1h30m (got "5")`,
		},
		{
			name: "long bad value",
			yaml: "origin: {dsn: host=db1}\nbatch: {max_bytes: 16 megabytes please}\n",
			want: `pgreplica.yaml:2: batch.max_bytes: want a whole number (got "16 megabytes please")`,
		},
		{
			name: "list instead of mapping",
			yaml: "origin: {dsn: host=db1}\nbatch: [1, 2]\n",
			want: "pgreplica.yaml:2: batch: want a mapping (got a list)",
		},
		{
			name: "scalar instead of list",
			yaml: "origin: {dsn: host=db1}\nreplicas: host=db2\n",
			want: `pgreplica.yaml:2: replicas: want a list (got "host=db2")`,
		},
		{
			name: "zero poll interval",
			yaml: "origin: {dsn: host=db1}\npoll_interval: 0\n",
			want: "pgreplica.yaml:2: poll_interval: must be at least 10ms (got 0s)",
		},
		{
			name: "poll interval below the bound",
			yaml: "origin: {dsn: host=db1}\npoll_interval: 1ns\n",
			want: "pgreplica.yaml:2: poll_interval: must be at least 10ms (got 1ns)",
		},
		{
			name: "negative purge interval",
			yaml: "origin: {dsn: host=db1}\npurge:\n  interval: -1m\n",
			want: "pgreplica.yaml:3: purge.interval: must be at least 1s, or 0 to turn periodic purging off (got -1m0s)",
		},
		{
			name: "purge interval below the bound",
			yaml: "origin: {dsn: host=db1}\npurge:\n  interval: 1ms\n",
			want: "pgreplica.yaml:3: purge.interval: must be at least 1s, or 0 to turn periodic purging off (got 1ms)",
		},
		{
			name: "fractional batch size",
			yaml: "origin: {dsn: host=db1}\nbatch:\n  max_events: 1.5\n  max_bytes: 1e6\n",
			want: `pgreplica.yaml:3: batch.max_events: want a whole number (got "1.5")` + "\n" +
				`pgreplica.yaml:4: batch.max_bytes: want a whole number (got "1e6")`,
		},
		{
			name: "boolean batch size",
			yaml: "origin: {dsn: host=db1}\nbatch:\n  max_events: true\n",
			want: `pgreplica.yaml:3: batch.max_events: want a whole number (got "true")`,
		},
		{
			name: "timeouts below the bounds",
			yaml: "origin: {dsn: host=db1}\ntimeouts:\n  connect: 1ms\n  dead_path: 10ms\n  orphan_grace: 0s\n",
			want: "pgreplica.yaml:3: timeouts.connect: must be at least 100ms (got 1ms)\n" +
				"pgreplica.yaml:4: timeouts.dead_path: must be at least 1s (got 10ms)\n" +
				"pgreplica.yaml:5: timeouts.orphan_grace: must be at least 1s (got 0s)",
		},
		{
			name: "several problems",
			yaml: "name: Shop\norigin: {dsn: host=db1}\nreplicas:\n  - name: r\n    dsn: host=db2\n  - name: r\n    dsn: host=db3\nbatch:\n  max_events: 0\n",
			want: `pgreplica.yaml:1: name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "Shop")` + "\n" +
				`pgreplica.yaml:6: replicas[1].name: duplicate, already used by replicas[0] (got "r")` + "\n" +
				`pgreplica.yaml:9: batch.max_events: must be positive (got 0)`,
		},
		{
			name: "several decode errors",
			yaml: "origin: {dsn: host=db1}\npoll_interval: x\nbogus: 1\n",
			want: `pgreplica.yaml:2: poll_interval: want a duration such as 500ms, 5s, 1m or 1h30m (got "x")` + "\n" +
				`pgreplica.yaml:3: unknown key "bogus"`,
		},
		{
			name: "malformed dsn with a password",
			yaml: "origin:\n  dsn: host=db1 password=hun ter2 port=5432\n",
			want: `pgreplica.yaml:2: origin.dsn: cannot parse: failed to parse as keyword/value (missing "=" after "xxxxx" in connection info string)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.yaml))
			if got := errText(err); got != tt.want {
				t.Errorf("Load() error\n got: %s\nwant: %s", got, tt.want)
			}
			if c != nil {
				t.Errorf("Load() = %+v, want nil with an error", c)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := Load("x.yaml")
	if got, want := errText(err), "config file x.yaml: no such file"; got != want {
		t.Errorf("Load() error %q, want %q", got, want)
	}
}

func TestLoadExample(t *testing.T) {
	c, err := Load("../../configs/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RequireReplicas(); err != nil {
		t.Error(err)
	}
	if c.Name != "shop" || len(c.Replicas) != 3 || !c.Replicas[2].File || c.Replicas[0].Rule("public.customers").Hash() == "" || c.Control.Socket == "" || len(c.Tables.Exclude) == 0 ||
		c.Serve.SSH.Listen == "" || c.Serve.SSH.AuthorizedKeys == "" || c.Serve.SSH.ReadOnlyKeys == "" {
		t.Errorf("example.yaml does not set every key: %+v", c)
	}
	// The example documents the defaults it repeats.
	d := Default()
	if c.PollInterval != d.PollInterval || c.Batch != d.Batch || c.Purge != d.Purge || c.Timeouts != d.Timeouts ||
		c.Serve.SSH.IdleTimeout != d.Serve.SSH.IdleTimeout || c.Serve.SSH.MaxSessions != d.Serve.SSH.MaxSessions {
		t.Errorf("example.yaml: poll_interval, batch or purge differ from the defaults: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Default()
		c.Origin.DSN = "host=db1 dbname=shop"
		c.Replicas = []Replica{{Name: "reporting", DSN: "host=db2 dbname=shop"}}
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"valid", func(c *Config) {}, "<nil>"},
		{"no replicas is valid", func(c *Config) { c.Replicas = nil }, "<nil>"},
		{"longest name", func(c *Config) { c.Name = "_" + strings.Repeat("a9", 31) }, "<nil>"},
		{"empty name", func(c *Config) { c.Name = "" },
			`name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "")`},
		{"name starts with a digit", func(c *Config) { c.Name = "1shop" },
			`name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "1shop")`},
		{"name too long", func(c *Config) { c.Name = strings.Repeat("a", 64) },
			`name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "` + strings.Repeat("a", 64) + `")`},
		{"name with a dash", func(c *Config) { c.Name = "my-shop" },
			`name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "my-shop")`},
		{"origin missing", func(c *Config) { c.Origin.DSN = "  " }, "origin.dsn: missing"},
		{"origin bad port", func(c *Config) { c.Origin.DSN = "host=db1 port=abc" }, "origin.dsn: cannot parse: invalid port"},
		{"replica name missing", func(c *Config) { c.Replicas[0].Name = "" }, "replicas[0].name: missing"},
		{"replica name invalid", func(c *Config) { c.Replicas[0].Name = "Reporting" },
			`replicas[0].name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "Reporting")`},
		{"replica names unique", func(c *Config) {
			c.Replicas = append(c.Replicas, Replica{Name: "b", DSN: "host=db3"}, Replica{Name: "reporting", DSN: "host=db4"})
		}, `replicas[2].name: duplicate, already used by replicas[0] (got "reporting")`},
		{"replica dsn missing", func(c *Config) { c.Replicas[0].DSN = "" }, "replicas[0].dsn: missing"},
		{"file replica", func(c *Config) { c.Replicas[0] = Replica{Name: "dmz", File: true} }, "<nil>"},
		{"file replica with a dsn", func(c *Config) { c.Replicas[0].File = true },
			"replicas[0].dsn: a file replica (file: true) has no dsn: it is fed by bundle files; remove one of the two"},
		{"replica dsn bad", func(c *Config) { c.Replicas[0].DSN = "host=db2 sslmode=bogus" },
			"replicas[0].dsn: cannot parse: failed to configure TLS (sslmode is invalid)"},
		{"replica is the origin", func(c *Config) { c.Replicas[0].DSN = c.Origin.DSN },
			"replicas[0].dsn: same as origin.dsn: a database cannot replicate into itself"},
		{"include empty", func(c *Config) { c.Tables.Include = nil },
			`tables.include: empty, so no table would be replicated (use "*.*" for every table)`},
		{"include without dot", func(c *Config) { c.Tables.Include = []string{"orders"} },
			`tables.include[0]: pattern must be schema.table (got "orders")`},
		{"include empty table glob", func(c *Config) { c.Tables.Include = []string{"public."} },
			`tables.include[0]: pattern must be schema.table (got "public.")`},
		{"exclude bad", func(c *Config) { c.Tables.Exclude = []string{"public.*", "[.x"} },
			`tables.exclude[1]: bad pattern "[.x": syntax error in pattern`},
		{"poll interval zero", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be at least 10ms (got 0s)"},
		{"poll interval 10ms", func(c *Config) { c.PollInterval = 10 * time.Millisecond }, "<nil>"},
		{"dead path short", func(c *Config) { c.Timeouts.DeadPath = time.Millisecond },
			"timeouts.dead_path: must be at least 1s (got 1ms)"},
		{"batch events", func(c *Config) { c.Batch.MaxEvents = -1 }, "batch.max_events: must be positive (got -1)"},
		{"batch bytes", func(c *Config) { c.Batch.MaxBytes = 0 }, "batch.max_bytes: must be positive (got 0)"},
		{"purge off", func(c *Config) { c.Purge.Interval = 0 }, "<nil>"},
		{"purge negative", func(c *Config) { c.Purge.Interval = -time.Second },
			"purge.interval: must be at least 1s, or 0 to turn periodic purging off (got -1s)"},
		{"socket too long", func(c *Config) { c.Control.Socket = "/" + strings.Repeat("s", 107) },
			"control.socket: too long for a unix socket path, at most 107 bytes (got 108 bytes)"},
		{"all problems reported", func(c *Config) {
			c.Name = "X"
			c.Origin.DSN = ""
			c.PollInterval = -time.Second
		}, `name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "X")` + "\n" +
			"origin.dsn: missing\n" +
			"poll_interval: must be at least 10ms (got -1s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			if got := errText(c.Validate()); got != tt.want {
				t.Errorf("Validate()\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

// pgx's own messages for malformed DSNs can quote parts of them; none of
// that may reach an error message.
func TestValidateHidesPasswords(t *testing.T) {
	dsns := []string{
		"host=db1 password=hunter2 port=abc",
		"host=db1 password=hunter2 sslmode=bogus",
		"host=db1 password='hunter2",
		"host=db1 password=hunter2 user",
		"host=db1 password=x hunter2 port=5432",
		"password = hunter2 connect_timeout=soon",
		"postgres://u:hunter2@db1:abc/shop",
		"postgres://u:hunter2@[::1/shop",
		"postgres://u:hunter2@db1/shop?sslmode=bogus",
		"postgres://u:hunter2@db1/shop?x",
		"postgres://u:hunt%zzer2@db1/shop",
		"postgres://u:hunter2/x@db1/shop",
		"postgres://db1/shop?password=hunter2&port=abc",
		"postgres://db1/shop?password=x&hunter2",
		"postgres://db1/shop?password=hunter2=x",
		"postgresql://db1/shop?sslpassword=hunter2&sslmode=bogus",
	}
	for _, dsn := range dsns {
		c := Default()
		c.Origin.DSN = "host=db0"
		c.Replicas = []Replica{{Name: "r", DSN: dsn}}
		err := c.Validate()
		if err == nil {
			t.Errorf("Validate() accepted %q", dsn)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hunt") {
			t.Errorf("Validate() of %q shows the password: %v", dsn, err)
		}
		if !strings.HasPrefix(err.Error(), "replicas[0].dsn: cannot parse: ") {
			t.Errorf("Validate() of %q = %v, want a cannot parse error", dsn, err)
		}
	}

	// Odd but valid DSNs, and the malformed ones, for display.
	valid := []string{
		"host=db1 password=hunter2'",
		"host=db1 password=hunter2\\",
		"host=db1 password='hun ter2'",
		"postgres://u:hunter2?x@db1/shop",
		"postgres://u:hunter2@db1/shop?password=hunter2",
	}
	for _, dsn := range append(valid, dsns...) {
		for _, s := range []string{Redact(dsn), Describe(dsn)} {
			if strings.Contains(s, "hunt") || strings.Contains(s, "ter2") {
				t.Errorf("Redact or Describe of %q shows the password: %q", dsn, s)
			}
		}
	}
}

func TestFromFlags(t *testing.T) {
	c, err := FromFlags("", "host=db1", []string{"host=db2", "host=db3", "host=db4"})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Origin.DSN = "host=db1"
	want.Replicas = []Replica{
		{Name: "replica", DSN: "host=db2"},
		{Name: "replica2", DSN: "host=db3"},
		{Name: "replica3", DSN: "host=db4"},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("FromFlags() = %+v, want %+v", *c, want)
	}

	c, err = FromFlags("shop", "host=db1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "shop" || len(c.Replicas) != 0 || c.Path != "" {
		t.Errorf("FromFlags(shop) = %+v", c)
	}
	if got, want := errText(c.RequireReplicas()), "no replicas configured: add one under replicas: in a config file, or pass --replica DSN"; got != want {
		t.Errorf("RequireReplicas() = %q, want %q", got, want)
	}

	_, err = FromFlags("Shop", "", []string{"host=db2 port=x"})
	want2 := `name: must be 1-63 characters of a-z, 0-9 and _, not starting with a digit (got "Shop")` + "\n" +
		"origin.dsn: missing\n" +
		"replicas[0].dsn: cannot parse: invalid port"
	if got := errText(err); got != want2 {
		t.Errorf("FromFlags() error\n got: %s\nwant: %s", got, want2)
	}
}

func TestRequireReplicas(t *testing.T) {
	c := Default()
	c.Path = "/etc/pgreplica/shop.yaml"
	want := "no replicas configured: add one under replicas: in /etc/pgreplica/shop.yaml, or pass --replica DSN"
	if got := errText(c.RequireReplicas()); got != want {
		t.Errorf("RequireReplicas() = %q, want %q", got, want)
	}
	c.Replicas = []Replica{{Name: "r", DSN: "host=db2"}}
	if err := c.RequireReplicas(); err != nil {
		t.Errorf("RequireReplicas() = %v, want nil", err)
	}
}

func TestReplica(t *testing.T) {
	c := Default()
	if _, err := c.Replica("reporting"); errText(err) != `unknown replica "reporting": no replicas configured` {
		t.Errorf("Replica() with none = %v", err)
	}
	c.Replicas = []Replica{{Name: "reporting", DSN: "host=db2"}, {Name: "standby", DSN: "host=db3"}}
	r, err := c.Replica("standby")
	if err != nil || !reflect.DeepEqual(r, c.Replicas[1]) {
		t.Errorf("Replica(standby) = %+v, %v", r, err)
	}
	if _, err := c.Replica("backup"); errText(err) != `unknown replica "backup" (known: reporting, standby)` {
		t.Errorf("Replica(backup) = %v", err)
	}
}

func TestFind(t *testing.T) {
	touch := func(t *testing.T, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		files    []string // below the test's root; cwd is "cwd", etc is "etc"
		explicit string
		want     string // below the test's root
		wantErr  string // with the root replaced by ROOT
	}{
		{name: "nothing", want: ""},
		{name: "explicit", files: []string{"other.yaml", "cwd/pgreplica.yaml"}, explicit: "other.yaml", want: "other.yaml"},
		{name: "explicit missing", files: []string{"cwd/pgreplica.yaml"}, explicit: "x.yaml",
			wantErr: "config file ROOT/x.yaml: no such file"},
		{name: "explicit directory", files: []string{"cwd/pgreplica.yaml"}, explicit: "cwd",
			wantErr: "config file ROOT/cwd: is a directory"},
		{name: "cwd before etc", files: []string{"cwd/pgreplica.yaml", "etc/shop.yaml"}, want: "cwd/pgreplica.yaml"},
		{name: "single etc file", files: []string{"etc/shop.yaml", "etc/notes.txt", "cwd/other.yaml"}, want: "etc/shop.yaml"},
		{name: "several etc files", files: []string{"etc/shop.yaml", "etc/crm.yaml"},
			wantErr: "several config files in ROOT/etc, one per replication set (ROOT/etc/crm.yaml, ROOT/etc/shop.yaml): choose one with -c FILE, e.g. -c ROOT/etc/crm.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				touch(t, filepath.Join(root, f))
			}
			explicit := ""
			if tt.explicit != "" {
				explicit = filepath.Join(root, tt.explicit)
			}
			got, err := find(explicit, filepath.Join(root, "cwd"), filepath.Join(root, "etc"))
			if gotErr := strings.ReplaceAll(errText(err), root, "ROOT"); tt.wantErr != "" || err != nil {
				if gotErr != tt.wantErr {
					t.Errorf("find() error %q, want %q", gotErr, tt.wantErr)
				}
				return
			}
			want := ""
			if tt.want != "" {
				want = filepath.Join(root, tt.want)
			}
			if got != want {
				t.Errorf("find() = %q, want %q", got, want)
			}
		})
	}
}

func TestFindRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("pgreplica.yaml", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Find("")
	if err != nil || got != "pgreplica.yaml" {
		t.Errorf("Find() = %q, %v; want pgreplica.yaml", got, err)
	}
	got, err = Find("pgreplica.yaml")
	if err != nil || got != "pgreplica.yaml" {
		t.Errorf("Find(pgreplica.yaml) = %q, %v", got, err)
	}
	if _, err := Find("x.yaml"); errText(err) != "config file x.yaml: no such file" {
		t.Errorf("Find(x.yaml) error = %v", err)
	}
}

func TestMatch(t *testing.T) {
	tables := Tables{
		Include: []string{"public.*", "sales.order?", "Weird.[A-Z]*", "dots.a.b", "slash.*"},
		Exclude: []string{"public.audit_*", `public.tmp\*`},
	}
	tests := []struct {
		schema, table string
		want          bool
	}{
		{"public", "orders", true},
		{"public", "audit_log", false},   // excluded
		{"public", "audit", true},        // audit_* needs the underscore
		{"public", "tmp*", false},        // escaped star is literal
		{"public", "tmp1", true},         // ...so tmp1 is not excluded
		{"sales", "orders", true},        // ? is one character
		{"sales", "order", false},        // ...exactly one
		{"sales", "orders2", false},      //
		{"other", "orders", false},       // not included
		{"weird", "Big", false},          // case-sensitive schema
		{"Weird", "Big", true},           // raw names
		{"Weird", "big", false},          //
		{"dots", "a.b", true},            // split at the first dot
		{"dots.a", "b", false},           //
		{"slash", "a/b", true},           // "/" is an ordinary character
		{"public", "with space", true},   //
		{"pgreplica", "log", false},      // pgreplica's own schema, never
		{"pgreplica", "position", false}, //
	}
	for _, tt := range tests {
		if got := tables.Match(tt.schema, tt.table); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.schema, tt.table, got, tt.want)
		}
	}

	all := Default().Tables
	if !all.Match("public", "x") || !all.Match("Any Schema", "Any Table") || all.Match("pgreplica", "log") {
		t.Error("default tables: want every table except pgreplica's")
	}
	if (Tables{Include: []string{"*.*"}, Exclude: []string{"*.*"}}).Match("public", "x") {
		t.Error("exclude must win over include")
	}
	if (Tables{}).Match("public", "x") {
		t.Error("no include pattern must match nothing")
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://replicator:s3cret@10.0.0.2:5432/shop", "postgres://replicator@10.0.0.2:5432/shop"},
		{"postgres://replicator@10.0.0.2:5432/shop", "postgres://replicator@10.0.0.2:5432/shop"},
		{"postgresql://replicator:s3cret@db1/shop?sslmode=require&password=s3cret&application_name=me@example.com",
			"postgresql://replicator@db1/shop?sslmode=require&application_name=me@example.com"},
		{"postgres://replicator:s3c@r:et@db1/shop", "postgres://replicator@db1/shop"},
		{"postgres://u:p%40ss@[::1]:5432,db2:5433/shop", "postgres://u@[::1]:5432,db2:5433/shop"},
		{"postgres://db1/shop?pass%77ord=s3cret", "postgres://db1/shop"},
		{"postgres://db1/shop?password=s3cret", "postgres://db1/shop"},
		{"postgres://user:s3/cret@db1/shop", "postgres://user@db1/shop"},
		{"postgres://db1:5432/shop?application_name=me@example.com", "postgres://db1:5432/shop?application_name=me@example.com"},
		{"host=db1 port=5432 dbname=shop user=replicator password=x", "host=db1 port=5432 dbname=shop user=replicator"},
		{"password=x host=db1", "host=db1"},
		{"host=db1 password = 'a b\\' c' sslpassword=y dbname='my shop'", "host=db1 dbname='my shop'"},
		{"host=db1 PASSWORD=x", "host=db1"},
		{"host=db1 password=a b c port=5432", "host=db1"},
		{"host=db1 password='unterminated", "host=db1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.dsn); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Setenv("PGPORT", "5432") // the default port of the multi-host case
	tests := []struct{ dsn, want string }{
		{"postgres://replicator:s3cret@10.0.0.2:5433/shop", "replicator@10.0.0.2:5433/shop"},
		{"host=db1 port=5432 dbname=shop user=replicator password=s3cret", "replicator@db1:5432/shop"},
		{"postgres://u:s3cret@db1,db2:5433/shop?sslmode=disable", "u@db1:5432,db2:5433/shop"},
		{"host=::1 port=5432 dbname=shop user=u", "u@[::1]:5432/shop"},
		{"host=db1 port=abc user=u password=s3cret", "host=db1 port=abc user=u"}, // unparseable: Redact
	}
	for _, tt := range tests {
		if got := Describe(tt.dsn); got != tt.want {
			t.Errorf("Describe(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

// mmNodes is the start of a multi-master config (lines 1 to 3).
const mmNodes = "nodes:\n  - {name: a, dsn: host=db1}\n  - {name: b, dsn: host=db2}\n"

func TestLoadNodes(t *testing.T) {
	path := writeConfig(t, "name: mesh\nnodes:\n  - {name: paris, dsn: host=db1}\n  - {name: tokyo, dsn: host=db2}\n  - {name: lima, dsn: host=db3}\nskip_roles: [loader]\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !c.MultiMaster() || len(c.Nodes) != 3 || c.SkipRoles[0] != "loader" {
		t.Fatalf("loaded %+v", c)
	}
	var got []string
	for _, d := range c.Directions("") {
		var to []string
		for _, r := range d.Replicas {
			to = append(to, r.Name)
		}
		got = append(got, d.Name+" "+d.Source+" "+d.Origin.DSN+" -> "+strings.Join(to, ","))
	}
	want := "mesh__paris paris host=db1 -> tokyo,lima|mesh__tokyo tokyo host=db2 -> paris,lima|mesh__lima lima host=db3 -> paris,tokyo"
	if strings.Join(got, "|") != want {
		t.Fatalf("directions:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if d := c.Directions("lima"); len(d) != 2 || d[0].Replicas[0].Name != "lima" || d[1].Source != "tokyo" {
		t.Fatalf("directions into lima: %+v", d)
	}
	if p := c.Pairs(); len(p) != 3 || p[2].Source != "tokyo" || p[2].Replicas[0].Name != "lima" {
		t.Fatalf("pairs: %+v", p)
	}

	// Per-kind overrides: a kind's policy wins over its table's, which
	// wins over the set's; both kinds of an UPDATE/DELETE pair overridden
	// alike is valid.
	c, err = Load(writeConfig(t, mmNodes+"conflicts:\n  policy: latest\n  tables: {public.stock: priority}\n"+
		"  kinds: {insert_exists: error, update_missing: priority, delete_origin_differs: priority}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][3]string{
		{"public.t", "insert_exists", "error"}, {"public.stock", "insert_exists", "error"},
		{"public.t", "update_origin_differs", "latest"}, {"public.stock", "update_origin_differs", "priority"},
		{"public.t", "update_missing", "priority"}, {"public.t", "delete_origin_differs", "priority"},
	} {
		if got := c.PolicyForKind(tc[0], tc[1]); got != tc[2] {
			t.Errorf("policy for %s in %s = %s, want %s", tc[1], tc[0], got, tc[2])
		}
	}

	for _, tc := range []struct{ yaml, want string }{
		{"nodes:\n  - {name: a, dsn: host=db1}\n  - {name: b, dsn: host=db2}\nreplicas:\n  - {name: r, dsn: host=db3}\n",
			"pgreplica.yaml:1: nodes: a multi-master set lists nodes: instead of origin: and replicas:; keep one of the two shapes"},
		{"nodes:\n  - {name: a, dsn: host=db1}\n",
			"pgreplica.yaml:1: nodes: a multi-master set needs at least 2 nodes (got 1)"},
		{"nodes:\n  - {name: a, dsn: host=db1}\n  - {name: a, dsn: host=db2}\n",
			`pgreplica.yaml:3: nodes[1].name: duplicate, already used by nodes[0] (got "a")`},
		{"nodes:\n  - {name: a__b, dsn: host=db1}\n  - {name: c, dsn: host=db2}\n",
			`pgreplica.yaml:2: nodes[0].name: must not contain "__", which joins set and node names (got "a__b")`},
		{"origin: {dsn: host=db1}\nskip_roles: [x, x]\n",
			`pgreplica.yaml:2: skip_roles[1]: duplicate, already listed as skip_roles[0] (got "x")`},
		{mmNodes + "conflicts:\n  kinds:\n    insert_exists: error\n    update_conflict: latest\n",
			`pgreplica.yaml:7: conflicts.kinds.update_conflict: unknown conflict kind: want insert_exists, update_origin_differs, update_missing, delete_origin_differs, delete_missing (got "update_conflict")`},
		{mmNodes + "conflicts:\n  kinds:\n    insert_exists: keep_local\n",
			`pgreplica.yaml:6: conflicts.kinds.insert_exists: keep_local does not converge: each node would keep a different row; use latest, priority or error (got "keep_local")`},
		{mmNodes + "conflicts:\n  kinds:\n    delete_missing: newest\n",
			`pgreplica.yaml:6: conflicts.kinds.delete_missing: want latest, priority or error (got "newest")`},
		{mmNodes + "conflicts:\n  policy: latest\n  kinds:\n    update_missing: priority\n",
			`pgreplica.yaml:6: conflicts.kinds: update_missing resolves by priority but delete_origin_differs by latest in the set: of a concurrent UPDATE and DELETE of one row, the node that deleted meets the update as update_missing and the node that updated meets the delete as delete_origin_differs, so the two must resolve by the same policy or the nodes keep different rows; give both the same policy`},
		{mmNodes + "conflicts:\n  policy: priority\n  tables: {public.stock: latest}\n  kinds: {delete_origin_differs: priority}\n",
			`pgreplica.yaml:7: conflicts.kinds: update_missing resolves by latest but delete_origin_differs by priority in table public.stock: of a concurrent UPDATE and DELETE of one row, the node that deleted meets the update as update_missing and the node that updated meets the delete as delete_origin_differs, so the two must resolve by the same policy or the nodes keep different rows; give both the same policy`},
		{"origin: {dsn: host=db1}\nconflicts:\n  kinds: {insert_exists: error}\n",
			`pgreplica.yaml:2: conflicts: conflict policies are for a multi-master set (nodes:); a one-way set has only detect_drift and retention`},
	} {
		_, err := Load(writeConfig(t, tc.yaml))
		if errText(err) != tc.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tc.yaml, errText(err), tc.want)
		}
	}
}
