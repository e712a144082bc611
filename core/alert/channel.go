package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"pgreplica/core/config"
)

// Channel is where messages go: e-mail or a webhook.
type Channel interface {
	Name() string // "email", "webhook https://hooks.example.com" (no secrets)
	Send(ctx context.Context, m Message) error
}

// SignatureHeader carries a webhook body's HMAC-SHA256, as
// "sha256=<hex>", keyed with the contents of secret_file.
const SignatureHeader = "X-Pgreplica-Signature"

// Sign is the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	h := hmac.New(sha256.New, secret)
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

// sendTimeout bounds one attempt of one channel.
const sendTimeout = 15 * time.Second

// Webhook POSTs each message as JSON.
type Webhook struct {
	url    string
	secret []byte
	client *http.Client
}

// NewWebhook makes the channel of w, reading its secret file.
func NewWebhook(w config.Webhook) (*Webhook, error) {
	h := &Webhook{url: w.URL, client: &http.Client{Timeout: sendTimeout}}
	if w.SecretFile != "" {
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("webhook %s: secret_file: %w", shownURL(w.URL), err)
		}
		h.secret = bytes.TrimRight(b, "\r\n")
		if len(h.secret) == 0 {
			return nil, fmt.Errorf("webhook %s: secret_file %s is empty", shownURL(w.URL), w.SecretFile)
		}
	}
	return h, nil
}

// Name is "webhook scheme://host/path", without query or password.
func (h *Webhook) Name() string { return "webhook " + shownURL(h.url) }

// Send POSTs m.
func (h *Webhook) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pgreplica")
	if h.secret != nil {
		req.Header.Set(SignatureHeader, Sign(h.secret, body))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // the URL may hold a token: name it by Name only
		}
		return fmt.Errorf("%s: %w", h.Name(), err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", h.Name(), resp.Status)
	}
	return nil
}

// shownURL is scheme://host/path: no password, no query (tokens).
func shownURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(bad url)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// Email sends each message by SMTP.
type Email struct {
	cfg      config.Email
	host     string
	port     int
	password string
}

// NewEmail makes the channel of e. The password is read from
// e.PasswordFile, else taken from envPassword (PGREPLICA_SMTP_PASSWORD).
func NewEmail(e config.Email, envPassword string) (*Email, error) {
	host, port, err := net.SplitHostPort(e.SMTP)
	if err != nil {
		return nil, fmt.Errorf("alerts.email.smtp: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("alerts.email.smtp: bad port %q", port)
	}
	m := &Email{cfg: e, host: host, port: p, password: envPassword}
	if e.PasswordFile != "" {
		b, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("alerts.email.password_file: %w", err)
		}
		m.password = strings.TrimRight(string(b), "\r\n")
	}
	return m, nil
}

// Name is "email smtp.example.com:587".
func (e *Email) Name() string { return "email " + e.cfg.SMTP }

// Send mails m to every recipient.
func (e *Email) Send(ctx context.Context, m Message) error {
	msg := mail.NewMsg()
	if err := msg.From(e.cfg.From); err != nil {
		return fmt.Errorf("%s: from: %w", e.Name(), err)
	}
	if err := msg.To(e.cfg.To...); err != nil {
		return fmt.Errorf("%s: to: %w", e.Name(), err)
	}
	msg.Subject(m.Subject())
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, m.Text())
	opts := []mail.Option{mail.WithPort(e.port), mail.WithTimeout(sendTimeout)}
	switch e.cfg.TLS {
	case "implicit":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if e.cfg.Username != "" {
		// The best mechanism the server offers; PLAIN only over TLS,
		// unless the operator chose tls: none.
		auth := mail.SMTPAuthAutoDiscover
		if e.cfg.TLS == "none" {
			auth = mail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(e.cfg.Username), mail.WithPassword(e.password))
	}
	c, err := mail.NewClient(e.host, opts...)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Name(), err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("%s: %s", e.Name(), scrub(err.Error(), e.password))
	}
	return nil
}

func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "xxxxx")
}

// Channels makes the channels of a config. envPassword is
// PGREPLICA_SMTP_PASSWORD.
func Channels(a config.Alerts, envPassword string) ([]Channel, error) {
	var out []Channel
	if a.Email != nil {
		e, err := NewEmail(*a.Email, envPassword)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	for _, w := range a.Webhooks {
		h, err := NewWebhook(w)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}
