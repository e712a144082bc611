package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadAlerts(t *testing.T) {
	path := writeConfig(t, `origin: {dsn: "host=a dbname=x"}
alerts:
  email:
    smtp: "smtp.example.com:587"
    username: pgreplica
    password_file: /etc/pgreplica/smtp.password
    from: "pgreplica@example.com"
    to: ["dba@example.com"]
  webhooks:
    - url: "https://hooks.example.com/pgreplica"
      secret_file: /etc/pgreplica/hook.secret
  lag_over: 30s
  repeat: 1h
metrics:
  listen: "127.0.0.1:9187"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Alerts
	if a.Email == nil || a.Email.SMTP != "smtp.example.com:587" || a.Email.To[0] != "dba@example.com" ||
		len(a.Webhooks) != 1 || a.LagOver != 30*time.Second || a.Repeat != time.Hour || a.Grace != DefaultGrace ||
		c.Metrics.Listen != "127.0.0.1:9187" || !a.Enabled() {
		t.Errorf("alerts = %+v, metrics = %+v", a, c.Metrics)
	}
}

func TestLoadAlertsBadInput(t *testing.T) {
	path := writeConfig(t, `origin: {dsn: "host=a dbname=x"}
alerts:
  email:
    smtp: "smtp.example.com"
    from: "pgreplica@example.com"
    to: ["dba@example.com", "not an address"]
  webhooks:
    - url: "ftp://user:hunter2@hooks.example.com/x"
  lag_over: -1s
metrics:
  listen: "9187"
`)
	_, err := Load(path)
	want := []string{
		`pgreplica.yaml:4: alerts.email.smtp: want host:port, such as smtp.example.com:587 or 127.0.0.1:9187 (got "smtp.example.com")`,
		`pgreplica.yaml:6: alerts.email.to[1]: want an e-mail address (got "not an address")`,
		`pgreplica.yaml:8: alerts.webhooks[0].url: want an http:// or https:// URL (got "ftp://user:xxxxx@hooks.example.com/x")`,
		`pgreplica.yaml:9: alerts.lag_over: must not be negative, 0s turns it off (got -1s)`,
		`pgreplica.yaml:11: metrics.listen: want host:port, such as smtp.example.com:587 or 127.0.0.1:9187 (got "9187")`,
	}
	if got := errText(err); got != strings.Join(want, "\n") {
		t.Errorf("Load() error =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if strings.Contains(errText(err), "hunter2") {
		t.Error("the webhook password is in the error")
	}
}

func TestLoadExampleAlerts(t *testing.T) {
	c, err := Load("../../configs/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, d := c.Alerts, defaultAlerts()
	if a.Email == nil || a.Email.PasswordFile == "" || len(a.Webhooks) != 1 || a.Webhooks[0].SecretFile == "" || c.Metrics.Listen == "" {
		t.Errorf("example.yaml does not set every alerts/metrics key: %+v %+v", a, c.Metrics)
	}
	if a.LagOver != d.LagOver || a.Repeat != d.Repeat || a.Grace != d.Grace || a.Group != d.Group || a.MaxPerHr != d.MaxPerHr {
		t.Errorf("example.yaml: alerts differ from the defaults: %+v", a)
	}
}
