package scripts

import (
	"strings"
	"testing"
)

func TestUnitIsTheShippedOneWithItsExecStart(t *testing.T) {
	u := Unit("/opt/bin/pgreplica", "/srv/shop.yaml")
	if !strings.Contains(u, "\nExecStart=/opt/bin/pgreplica --config /srv/shop.yaml run --daemon\n") {
		t.Fatalf("ExecStart not replaced:\n%s", u)
	}
	if strings.Count(u, "ExecStart=") != 1 {
		t.Fatal("more than one ExecStart")
	}
	for _, want := range []string{"User=pgreplica", "NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=true", "RuntimeDirectory=pgreplica"} {
		if !strings.Contains(u, "\n"+want+"\n") {
			t.Errorf("the wizard's unit lacks %s", want)
		}
	}
}

// The template unit is hardened like the single one and runs NAME.yaml.
func TestTemplateUnitIsHardenedLikeTheSingleOne(t *testing.T) {
	u := TemplateUnit()
	if !strings.Contains(u, "\nExecStart=/usr/local/bin/pgreplica --config /etc/pgreplica/%i.yaml run --daemon\n") {
		t.Fatalf("ExecStart:\n%s", u)
	}
	for _, l := range strings.Split(unit, "\n") {
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "ExecStart=") || strings.HasPrefix(l, "Description=") {
			continue
		}
		if !strings.Contains(u, l+"\n") {
			t.Errorf("pgreplica@.service lacks %q of pgreplica.service", l)
		}
	}
}
