package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"time"
)

// Alerts is where and when operators are told (e-mail, webhooks).
type Alerts struct {
	Email    *Email        `yaml:"email"`        // nil: no e-mail
	Webhooks []Webhook     `yaml:"webhooks"`     // POSTed JSON, HMAC-signed when a secret is set
	LagOver  time.Duration `yaml:"lag_over"`     // alert when a replica is further behind; 0s: never
	Repeat   time.Duration `yaml:"repeat"`       // remind while a problem lasts, never more often; 0s: never
	Grace    time.Duration `yaml:"grace"`        // a replica unreachable (retrying) for longer is alerted
	Group    time.Duration `yaml:"group"`        // new conflicts are grouped per replica per this interval
	MaxPerHr int           `yaml:"max_per_hour"` // per-channel rate cap
}

// Email is an SMTP channel. The password comes from PasswordFile or the
// PGREPLICA_SMTP_PASSWORD environment variable, never from the config.
type Email struct {
	SMTP         string   `yaml:"smtp"` // host:port
	TLS          string   `yaml:"tls"`  // starttls (default: when offered), implicit (465), none
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
}

// Webhook is an HTTP channel.
type Webhook struct {
	URL        string `yaml:"url"`         // http:// or https://
	SecretFile string `yaml:"secret_file"` // HMAC-SHA256 key for the X-Pgreplica-Signature header
}

// Metrics is the Prometheus and health endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port; "" turns it off
}

// Defaults of the alerts.
const (
	DefaultLagOver  = time.Minute
	DefaultRepeat   = 4 * time.Hour
	DefaultGrace    = time.Minute
	DefaultGroup    = time.Minute
	DefaultMaxPerHr = 30
)

// Enabled reports whether any alert channel is configured.
func (a Alerts) Enabled() bool { return a.Email != nil || len(a.Webhooks) > 0 }

func defaultAlerts() Alerts {
	return Alerts{LagOver: DefaultLagOver, Repeat: DefaultRepeat, Grace: DefaultGrace, Group: DefaultGroup, MaxPerHr: DefaultMaxPerHr}
}

// alertProblems lists what is wrong with the alerts: and metrics: sections.
func (c *Config) alertProblems(add func(field, format string, args ...any)) {
	a := c.Alerts
	if e := a.Email; e != nil {
		if msg := hostPortProblem(e.SMTP); msg != "" {
			add("alerts.email.smtp", "%s (got %q)", msg, e.SMTP)
		}
		switch e.TLS {
		case "", "starttls", "implicit", "none":
		default:
			add("alerts.email.tls", "must be starttls, implicit or none (got %q)", e.TLS)
		}
		if _, err := mail.ParseAddress(e.From); err != nil {
			add("alerts.email.from", "want an e-mail address (got %q)", e.From)
		}
		if len(e.To) == 0 {
			add("alerts.email.to", "missing: list at least one recipient")
		}
		for i, t := range e.To {
			if _, err := mail.ParseAddress(t); err != nil {
				add(fmt.Sprintf("alerts.email.to[%d]", i), "want an e-mail address (got %q)", t)
			}
		}
		if e.PasswordFile != "" && e.Username == "" {
			add("alerts.email.password_file", "set, but alerts.email.username is not")
		}
	}
	for i, w := range a.Webhooks {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(fmt.Sprintf("alerts.webhooks[%d].url", i), "want an http:// or https:// URL (got %q)", shownURL(w.URL))
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"alerts.lag_over", a.LagOver}, {"alerts.repeat", a.Repeat}, {"alerts.grace", a.Grace}} {
		if d.v < 0 {
			add(d.field, "must not be negative, 0s turns it off (got %s)", d.v)
		}
	}
	if a.Group <= 0 {
		add("alerts.group", "must be positive (got %s)", a.Group)
	}
	if a.MaxPerHr <= 0 {
		add("alerts.max_per_hour", "must be positive (got %d)", a.MaxPerHr)
	}
	if c.Metrics.Listen != "" {
		if msg := hostPortProblem(c.Metrics.Listen); msg != "" {
			add("metrics.listen", "%s (got %q)", msg, c.Metrics.Listen)
		}
	}
}

// hostPortProblem checks an address such as smtp.example.com:587.
func hostPortProblem(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "want host:port, such as smtp.example.com:587 or 127.0.0.1:9187"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "want a port number 0-65535"
	}
	return ""
}

// shownURL is a URL without its password, for messages.
func shownURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
