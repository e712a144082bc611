package config

import (
	"path/filepath"
	"time"
)

// Serve is what `pgreplica serve` offers: today the TUI over SSH.
type Serve struct {
	SSH SSH `yaml:"ssh"`
}

// SSH configures the TUI served over SSH (`pgreplica serve --ssh`, `run
// --daemon --serve-ssh`). Relative paths are relative to the config file's
// directory (see SSH.Resolve).
type SSH struct {
	// Listen is host:port to listen on; "" serves nothing unless --ssh is given.
	Listen string `yaml:"listen"`
	// HostKey is the server's private key file, created (ed25519, mode 0600)
	// on first start and kept across restarts.
	HostKey string `yaml:"host_key"`
	// AuthorizedKeys is an authorized_keys file whose keys get the full TUI.
	AuthorizedKeys string `yaml:"authorized_keys"`
	// ReadOnlyKeys is an authorized_keys file whose keys get the TUI in
	// read-only mode. A key in both files is read-only.
	ReadOnlyKeys string `yaml:"read_only_keys"`
	// IdleTimeout closes a session with no key press for that long; 0 never.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxSessions is how many sessions may be open at once.
	MaxSessions int `yaml:"max_sessions"`
}

// Defaults of serve.ssh, also documented in configs/example.yaml.
const (
	DefaultSSHHostKey     = "ssh_host_ed25519_key"
	DefaultSSHIdleTimeout = 30 * time.Minute
	DefaultSSHMaxSessions = 10
)

func defaultServe() Serve {
	return Serve{SSH: SSH{HostKey: DefaultSSHHostKey, IdleTimeout: DefaultSSHIdleTimeout, MaxSessions: DefaultSSHMaxSessions}}
}

func (s Serve) problems(add func(field, format string, args ...any)) {
	if s.SSH.IdleTimeout < 0 {
		add("serve.ssh.idle_timeout", "must not be negative, 0 turns the idle timeout off (got %s)", s.SSH.IdleTimeout)
	}
	if s.SSH.MaxSessions < 1 {
		add("serve.ssh.max_sessions", "must be at least 1 (got %d)", s.SSH.MaxSessions)
	}
}

// Resolve returns s with its relative file paths made relative to the
// directory of the config file at cfgPath ("" leaves them relative to the
// working directory).
func (s SSH) Resolve(cfgPath string) SSH {
	if cfgPath == "" {
		return s
	}
	dir := filepath.Dir(cfgPath)
	for _, p := range []*string{&s.HostKey, &s.AuthorizedKeys, &s.ReadOnlyKeys} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return s
}
