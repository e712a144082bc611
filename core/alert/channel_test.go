package alert_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pgreplica/core/alert"
	"pgreplica/core/alert/alerttest"
	"pgreplica/core/config"
	"pgreplica/core/replay"
)

// syncBuffer is a log destination safe for the senders' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A message reaches a real SMTP server (authenticated, the password from
// password_file) and a real HTTP receiver whose signature verifies; the
// password is in no log line.
func TestChannelsDeliverSignedAndAuthenticated(t *testing.T) {
	const password = "s3cret-smtp-pw"
	mailSrv, err := alerttest.NewSMTP(alerttest.Accept)
	if err != nil {
		t.Fatal(err)
	}
	defer mailSrv.Close()
	mailSrv.Password = password
	hook := alerttest.NewWebhook()
	defer hook.Close()
	secret := "hook-key"
	cfg := config.Alerts{
		Email: &config.Email{SMTP: mailSrv.Addr, TLS: "none", Username: "pgreplica", PasswordFile: writeFile(t, "pw", password+"\n"),
			From: "pgreplica@example.com", To: []string{"dba@example.com", "oncall@example.com"}},
		Webhooks: []config.Webhook{{URL: hook.URL, SecretFile: writeFile(t, "secret", secret+"\n")}},
	}
	chans, err := alert.Channels(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a := alert.New("shop", chans, alert.Rules{Group: time.Minute}, slog.New(slog.NewTextHandler(&logs, nil)), alert.Options{})
	a.Start()
	a.Notify(alert.EngineStarted, "engine started", "pgreplica run on test")
	a.Close(10 * time.Second)

	mails := mailSrv.Mails()
	if len(mails) != 1 || mails[0].From != "pgreplica@example.com" || len(mails[0].To) != 2 || mails[0].Username != "pgreplica" ||
		mails[0].Subject() != "[pgreplica shop] INFO: engine started" || !strings.Contains(mails[0].Data, "pgreplica run on test") {
		t.Fatalf("mails = %+v", mails)
	}
	hooks := hook.Hooks()
	if len(hooks) != 1 {
		t.Fatalf("%d webhook calls", len(hooks))
	}
	if want := alert.Sign([]byte(secret), hooks[0].Body); hooks[0].Signature != want || !strings.HasPrefix(want, "sha256=") {
		t.Fatalf("signature %q, want %q", hooks[0].Signature, want)
	}
	var m alert.Message
	if err := json.Unmarshal(hooks[0].Body, &m); err != nil || m.Set != "shop" || m.Kind != alert.EngineStarted || m.Status != alert.Info {
		t.Fatalf("webhook body %s: %v", hooks[0].Body, err)
	}
	if strings.Contains(logs.String(), password) || strings.Contains(mails[0].Data, password) {
		t.Fatal("the SMTP password appears in the log or the mail")
	}
}

// An SMTP server that refuses, or one that hangs, is retried with backoff
// and logged; the engine's events are taken without waiting, and the other
// channel still delivers.
func TestFailingChannelNeverBlocks(t *testing.T) {
	for _, mode := range []alerttest.Mode{alerttest.Refuse, alerttest.Hang} {
		mailSrv, err := alerttest.NewSMTP(mode)
		if err != nil {
			t.Fatal(err)
		}
		defer mailSrv.Close()
		hook := alerttest.NewWebhook()
		defer hook.Close()
		chans, err := alert.Channels(config.Alerts{
			Email:    &config.Email{SMTP: mailSrv.Addr, From: "p@example.com", To: []string{"d@example.com"}},
			Webhooks: []config.Webhook{{URL: hook.URL}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		var logs syncBuffer
		a := alert.New("shop", chans, alert.Rules{Group: time.Minute}, slog.New(slog.NewTextHandler(&logs, nil)),
			alert.Options{MinBackoff: 50 * time.Millisecond, Attempts: 3})
		a.Start()
		start := time.Now()
		a.Notify(alert.EngineStarted, "engine started", "")
		for i := 0; i < 10000; i++ {
			a.OnEvent(replay.ConflictFound{Replica: "r", Conflict: replay.Conflict{EventID: int64(i), Kind: replay.UpdateNoRow}})
		}
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Fatalf("mode %d: 10000 engine events took %v", mode, took)
		}
		waitUntil(t, 5*time.Second, "webhook delivery", func() bool { return len(hook.Hooks()) == 1 })
		if mode == alerttest.Refuse {
			waitUntil(t, 5*time.Second, "retries logged", func() bool {
				return strings.Contains(logs.String(), "alert channel failed; retrying") &&
					strings.Contains(logs.String(), "alert not delivered; dropped")
			})
		}
		closed := time.Now()
		a.Close(time.Second)
		if took := time.Since(closed); took > 3*time.Second {
			t.Fatalf("mode %d: Close took %v", mode, took)
		}
	}
}

func TestSendTest(t *testing.T) {
	hook := alerttest.NewWebhook()
	defer hook.Close()
	chans, err := alert.Channels(config.Alerts{Webhooks: []config.Webhook{{URL: hook.URL}, {URL: "http://127.0.0.1:1/nothing"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	errs := alert.SendTest(context.Background(), "shop", chans)
	if errs[0] != nil || errs[1] == nil || !strings.HasPrefix(errs[1].Error(), "webhook http://127.0.0.1:1/nothing: ") {
		t.Fatalf("errs = %v", errs)
	}
	if len(hook.Hooks()) != 1 {
		t.Fatal("no test message")
	}
}

// The per-channel rate cap: with max_per_hour 2, two messages go at once
// and the rest wait in the queue (logged).
func TestRateCapPerChannel(t *testing.T) {
	hook := alerttest.NewWebhook()
	defer hook.Close()
	chans, err := alert.Channels(config.Alerts{Webhooks: []config.Webhook{{URL: hook.URL}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a := alert.New("shop", chans, alert.Rules{Group: time.Minute}, slog.New(slog.NewTextHandler(&logs, nil)), alert.Options{MaxPerHour: 2})
	a.Start()
	for i := 0; i < 5; i++ {
		a.Notify(alert.EngineStarted, fmt.Sprintf("message %d", i), "")
	}
	waitUntil(t, 5*time.Second, "the rate cap logged", func() bool { return strings.Contains(logs.String(), "alert rate cap reached; waiting") })
	time.Sleep(200 * time.Millisecond)
	if n := len(hook.Hooks()); n != 2 {
		t.Fatalf("%d messages delivered under a cap of 2 an hour", n)
	}
	a.Close(100 * time.Millisecond)
}
