package config

import (
	"testing"
	"time"
)

func TestLoadServeSSH(t *testing.T) {
	path := writeConfig(t, `origin: {dsn: host=db1}
serve:
  ssh:
    listen: 127.0.0.1:2222
    host_key: keys/host
    authorized_keys: /etc/pgreplica/ops.keys
    read_only_keys: watch.keys
    idle_timeout: 0
    max_sessions: 3
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := SSH{Listen: "127.0.0.1:2222", HostKey: "keys/host", AuthorizedKeys: "/etc/pgreplica/ops.keys", ReadOnlyKeys: "watch.keys", MaxSessions: 3}
	if c.Serve.SSH != want {
		t.Errorf("serve.ssh = %+v, want %+v", c.Serve.SSH, want)
	}
	got := c.Serve.SSH.Resolve("/etc/pgreplica/shop.yaml")
	if got.HostKey != "/etc/pgreplica/keys/host" || got.AuthorizedKeys != "/etc/pgreplica/ops.keys" || got.ReadOnlyKeys != "/etc/pgreplica/watch.keys" {
		t.Errorf("Resolve = %+v", got)
	}
	if r := c.Serve.SSH.Resolve(""); r != want {
		t.Errorf("Resolve(\"\") = %+v, want the paths unchanged", r)
	}
}

func TestLoadServeSSHErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"origin: {dsn: host=db1}\nserve:\n  ssh:\n    listn: x\n", `pgreplica.yaml:4: unknown key "serve.ssh.listn"`},
		{"origin: {dsn: host=db1}\nserve:\n  ssh:\n    max_sessions: 0\n", `pgreplica.yaml:4: serve.ssh.max_sessions: must be at least 1 (got 0)`},
		{"origin: {dsn: host=db1}\nserve:\n  ssh:\n    idle_timeout: -1s\n", `pgreplica.yaml:4: serve.ssh.idle_timeout: must not be negative, 0 turns the idle timeout off (got -1s)`},
	} {
		_, err := Load(writeConfig(t, tt.yaml))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: error %v, want %s", tt.yaml, err, tt.want)
		}
	}
	c := Default()
	if c.Serve.SSH.IdleTimeout != 30*time.Minute || c.Serve.SSH.MaxSessions != 10 {
		t.Errorf("defaults: %+v", c.Serve.SSH)
	}
}
