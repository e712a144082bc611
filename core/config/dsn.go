package config

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Redact returns dsn for display with every password removed: the password
// of a URL's user info, and password= and sslpassword= settings of either
// form. The rest is kept as written. Input that cannot be split safely is
// cut where it stops making sense, because what follows may be part of a
// password.
func Redact(dsn string) string {
	redacted, _ := splitSecrets(dsn)
	return redacted
}

// Describe returns a short form of dsn, user@host:port/dbname, as pgx
// resolves it (PG* variables and defaults included); several hosts are
// listed with commas. If pgx cannot parse dsn it returns Redact(dsn). It
// never contains the password.
func Describe(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return Redact(dsn)
	}
	hosts := []string{net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))}
	for _, fb := range cfg.Fallbacks {
		hostPort := net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port)))
		if !slices.Contains(hosts, hostPort) {
			hosts = append(hosts, hostPort)
		}
	}
	s := strings.Join(hosts, ",")
	if cfg.User != "" {
		s = cfg.User + "@" + s
	}
	if cfg.Database != "" {
		s += "/" + cfg.Database
	}
	return s
}

// dsnProblem returns what is wrong with a DSN, or "".
func dsnProblem(dsn string) string {
	if strings.TrimSpace(dsn) == "" {
		return "missing"
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "cannot parse: " + parseReason(dsn, err)
	}
	return ""
}

// parseReason is pgx's reason for rejecting dsn, without dsn and without any
// text that may be part of its password. pgx masks passwords in its message
// only on a best-effort basis, so the connection string is left out and
// every password candidate is scrubbed from what remains.
func parseReason(dsn string, err error) string {
	msg := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		bare := *pe
		bare.ConnString = ""
		msg = strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	}
	redacted, secrets := splitSecrets(dsn)
	msg = strings.ReplaceAll(msg, dsn, redacted)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		msg = replaceWord(msg, s, "xxxxx")
	}
	return msg
}

// replaceWord replaces the occurrences of word in s that are not part of a
// longer run of letters and digits.
func replaceWord(s, word, with string) string {
	if word == "" {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, word)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(word)
		if (i > 0 && isAlnum(s[i-1])) || (end < len(s) && isAlnum(s[end])) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteString(with)
		s = s[end:]
	}
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// splitSecrets returns dsn with its passwords removed, and the removed text
// that could be (part of) a password.
func splitSecrets(dsn string) (redacted string, secrets []string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return splitURLSecrets(dsn)
	}
	return splitKVSecrets(dsn)
}

func isSecretKey(key string) bool {
	key = strings.ToLower(key)
	return key == "password" || key == "sslpassword"
}

const kvSpace = " \t\n\r\v\f"

// kvSetting is one keyword=value of a libpq keyword/value string.
type kvSetting struct {
	key      string
	rawValue string // as written, quotes and escapes included
	value    string
	text     string // the whole setting as written
}

// splitKV splits a keyword/value string as libpq (and pgx) do. rest is the
// tail that cannot be parsed, "" when all of s can.
func splitKV(s string) (settings []kvSetting, rest string) {
	s = strings.TrimLeft(s, kvSpace)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return settings, s
		}
		key := strings.Trim(s[:eq], kvSpace)
		if key == "" || strings.ContainsAny(key, kvSpace) {
			return settings, s
		}
		v := strings.TrimLeft(s[eq+1:], kvSpace)
		var end int // end of the value in v
		var value string
		if v != "" && v[0] == '\'' {
			end = 1
			for end < len(v) && v[end] != '\'' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(v) {
				return settings, s // unterminated quoted string
			}
			end++ // the closing quote
			value = unescapeKV(v[1 : end-1])
		} else {
			for end < len(v) && !strings.ContainsRune(kvSpace, rune(v[end])) {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(v))
			value = unescapeKV(v[:end])
		}
		text := s[:len(s)-len(v)+end]
		settings = append(settings, kvSetting{key: key, rawValue: v[:end], value: value, text: text})
		s = strings.TrimLeft(v[end:], kvSpace)
	}
	return settings, ""
}

func unescapeKV(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func splitKVSecrets(dsn string) (string, []string) {
	settings, rest := splitKV(dsn)
	var kept, secrets []string
	sawSecret := false
	for _, s := range settings {
		if isSecretKey(s.key) {
			sawSecret = true
			secrets = append(secrets, s.rawValue, s.value)
			continue
		}
		kept = append(kept, s.text)
	}
	// The unparseable tail is dropped: after a password it is likely the
	// rest of a password with an unquoted space.
	if rest != "" && sawSecret {
		secrets = append(secrets, rest)
		secrets = append(secrets, strings.FieldsFunc(rest, func(r rune) bool {
			return strings.ContainsRune(kvSpace+"='", r)
		})...)
	}
	return strings.Join(kept, " "), secrets
}

// splitURLSecrets handles postgres:// and postgresql:// URLs.
func splitURLSecrets(dsn string) (string, []string) {
	scheme, rest, _ := strings.Cut(dsn, "://")
	var secrets []string

	// libpq ends the user info at the first '@' before the first '/'; taking
	// the last one covers that and passwords with an unencoded '@'.
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndexByte(authority, '@')
	if at < 0 && strings.Contains(authority, ":") && strings.Contains(rest, "@") {
		// No user info by libpq's rules, yet "x:y" before the first '/' and
		// an '@' after it: likely a password with an unencoded '/' or '?',
		// as in user:pa/ss@host. Treat it as user info, to be safe.
		path, _, _ := strings.Cut(rest[len(authority):], "?")
		if !validHostList(authority) || strings.Contains(path, "@") {
			at = strings.LastIndexByte(rest, '@')
		}
	}
	user := ""
	if at >= 0 {
		var password string
		var hasPassword bool
		user, password, hasPassword = strings.Cut(rest[:at], ":")
		if hasPassword {
			secrets = append(secrets, password)
			if decoded, err := url.PathUnescape(password); err == nil {
				secrets = append(secrets, decoded)
			}
		}
		rest = rest[at+1:]
	}

	hostPath, query, hasQuery := strings.Cut(rest, "?")
	var kept []string
	afterSecret := false
	for pair := range strings.SplitSeq(query, "&") {
		rawKey, rawValue, hasValue := strings.Cut(pair, "=")
		key, err := url.PathUnescape(rawKey)
		switch {
		case err != nil || isSecretKey(key):
			afterSecret = true
			secrets = append(secrets, pair, rawValue)
			if decoded, err := url.PathUnescape(rawValue); err == nil {
				secrets = append(secrets, decoded)
			}
		case afterSecret && !hasValue:
			// Likely the rest of a password with an unencoded '&'.
			secrets = append(secrets, pair)
		case pair != "":
			afterSecret = false
			kept = append(kept, pair)
		}
	}

	var b strings.Builder
	b.WriteString(scheme + "://")
	if user != "" {
		b.WriteString(user + "@")
	}
	b.WriteString(hostPath)
	if hasQuery && len(kept) > 0 {
		b.WriteString("?" + strings.Join(kept, "&"))
	}
	return b.String(), secrets
}

// validHostList reports whether s looks like a URL's host[:port],... list.
func validHostList(s string) bool {
	for hostPort := range strings.SplitSeq(s, ",") {
		port := ""
		if strings.HasPrefix(hostPort, "[") {
			end := strings.IndexByte(hostPort, ']')
			if end < 0 {
				return false
			}
			after := hostPort[end+1:]
			if after != "" && !strings.HasPrefix(after, ":") {
				return false
			}
			port = strings.TrimPrefix(after, ":")
		} else {
			_, port, _ = strings.Cut(hostPort, ":")
		}
		for _, r := range port {
			if r < '0' || r > '9' {
				return false
			}
		}
	}
	return true
}
