// Package alerttest has real alert receivers for tests: an SMTP server
// (github.com/emersion/go-smtp) and an HTTP webhook receiver, both on
// 127.0.0.1. Only tests import it.
package alerttest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the SMTP server received.
type Mail struct {
	From     string
	To       []string
	Data     string // headers and body
	Username string // who authenticated, "" when nobody
}

// Subject is the mail's Subject header.
func (m Mail) Subject() string {
	for _, l := range strings.Split(m.Data, "\r\n") {
		if s, ok := strings.CutPrefix(l, "Subject: "); ok {
			return s
		}
		if l == "" {
			break
		}
	}
	return ""
}

// Mode is how the SMTP server treats mail.
type Mode int

// The modes of the SMTP server.
const (
	Accept Mode = iota
	Refuse      // 554 to every MAIL FROM
	Hang        // accepts the connection, never answers
)

// SMTP is a real SMTP server on 127.0.0.1.
type SMTP struct {
	Addr     string
	Password string // the password AUTH PLAIN accepts ("" accepts any)

	mu    sync.Mutex
	mails []Mail
	mode  Mode
	srv   *smtp.Server
	l     net.Listener
	hung  []net.Conn
}

// NewSMTP starts an SMTP server; Close stops it.
func NewSMTP(mode Mode) (*SMTP, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &SMTP{Addr: l.Addr().String(), mode: mode, l: l}
	if mode == Hang {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				s.mu.Lock()
				s.hung = append(s.hung, c)
				s.mu.Unlock()
			}
		}()
		return s, nil
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = 10 * time.Second
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server.
func (s *SMTP) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
	s.l.Close()
	s.mu.Lock()
	for _, c := range s.hung {
		c.Close()
	}
	s.mu.Unlock()
}

// Mails returns what was received so far.
func (s *SMTP) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

type session struct {
	s    *SMTP
	mail Mail
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if x.s.Password != "" && pass != x.s.Password {
			return errors.New("invalid credentials")
		}
		x.mail.Username = user
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if x.s.mode == Refuse {
		return &smtp.SMTPError{Code: 554, Message: "no mail accepted here"}
	}
	x.mail.From = from
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.mail.To = append(x.mail.To, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.mail.Data = string(b)
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, x.mail)
	x.s.mu.Unlock()
	return nil
}

func (x *session) Reset()        { x.mail = Mail{Username: x.mail.Username} }
func (x *session) Logout() error { return nil }

// Hook is one webhook request received.
type Hook struct {
	Body      []byte
	Signature string
}

// Webhook is a real HTTP receiver on 127.0.0.1.
type Webhook struct {
	URL  string
	srv  *httptest.Server
	mu   sync.Mutex
	hits []Hook
}

// NewWebhook starts a receiver that answers 200; Close stops it.
func NewWebhook() *Webhook {
	w := &Webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.hits = append(w.hits, Hook{Body: b, Signature: r.Header.Get("X-Pgreplica-Signature")})
		w.mu.Unlock()
	}))
	w.URL = w.srv.URL + "/hook"
	return w
}

// Close stops the receiver.
func (w *Webhook) Close() { w.srv.Close() }

// Hooks returns what was received so far.
func (w *Webhook) Hooks() []Hook {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Hook(nil), w.hits...)
}
