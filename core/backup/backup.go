// Package backup takes a backup of the origin with pg_dump before
// pgreplica changes anything: the way back if the install goes wrong.
package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Progress is reported while pg_dump runs.
type Progress struct {
	Bytes   int64 // written to the file so far
	Elapsed time.Duration
	Done    bool
}

// Options say what to dump where.
type Options struct {
	DSN    string // the origin, as libpq accepts it
	File   string // custom-format dump to write; must not exist
	PgDump string // the pg_dump program; "" finds one with Find
	// Every is how often progress is reported (default 200ms).
	Every time.Duration
}

// Client is a pg_dump program and its version.
type Client struct {
	Path  string
	Major int
	Text  string // "pg_dump (PostgreSQL) 15.8"
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// Version runs path --version.
func Version(ctx context.Context, path string) (Client, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return Client{}, fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionRE.FindStringSubmatch(string(out))
	if m == nil {
		return Client{}, fmt.Errorf("%s --version: unexpected output %q", path, strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	return Client{Path: path, Major: major, Text: strings.TrimSpace(string(out))}, nil
}

// Find returns a pg_dump that can dump a server of serverMajor: the one of
// the same major version in /usr/lib/postgresql/N/bin, else the newest
// there or on PATH that is not older than the server. The error says what
// was found and how to fix it.
func Find(ctx context.Context, serverMajor int) (Client, error) {
	var cands []string
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if majorOf(d) == serverMajor {
			cands = append([]string{d}, cands...)
		} else {
			cands = append(cands, d)
		}
	}
	if p, err := exec.LookPath("pg_dump"); err == nil {
		cands = append(cands, p)
	}
	var newest Client
	for _, c := range cands {
		v, err := Version(ctx, c)
		if err != nil {
			continue
		}
		if v.Major >= serverMajor {
			return v, nil
		}
		if v.Major > newest.Major {
			newest = v
		}
	}
	if newest.Path == "" {
		return Client{}, fmt.Errorf("pg_dump not found (install the PostgreSQL %d client programs: apt-get install postgresql-client-%d)", serverMajor, serverMajor)
	}
	return newest, fmt.Errorf("pg_dump %d cannot dump a PostgreSQL %d server (install postgresql-client-%d)", newest.Major, serverMajor, serverMajor)
}

func majorOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Run dumps the database to opt.File in pg_dump's custom format (-Fc),
// reporting the file's size as it grows. When ctx is cancelled or pg_dump
// fails, pg_dump is stopped and the partial file removed.
func Run(ctx context.Context, opt Options, progress func(Progress)) error {
	if opt.File == "" {
		return errors.New("backup: no file name")
	}
	if _, err := os.Stat(opt.File); err == nil {
		return fmt.Errorf("backup: %s already exists; choose another name", opt.File)
	}
	if dir := filepath.Dir(opt.File); dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("backup: directory %s does not exist", dir)
		}
	}
	if opt.PgDump == "" {
		opt.PgDump = "pg_dump"
	}
	if opt.Every <= 0 {
		opt.Every = 200 * time.Millisecond
	}
	// The dump holds every row of the database: only its owner may read
	// it. Creating it here (exclusively, mode 0600) before pg_dump writes
	// into it keeps the umask out of it and two runs from sharing a file.
	f, err := os.OpenFile(opt.File, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(opt.PgDump, "--format=custom", "--no-password", "--file", opt.File, "--dbname", opt.DSN)
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		os.Remove(opt.File)
		return fmt.Errorf("backup: start %s: %w", opt.PgDump, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTicker(opt.Every)
	defer t.Stop()
	size := func() int64 {
		st, err := os.Stat(opt.File)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	for {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			os.Remove(opt.File)
			return fmt.Errorf("backup cancelled; partial file %s removed", opt.File)
		case err := <-done:
			if err != nil {
				os.Remove(opt.File)
				msg := strings.TrimSpace(stderr.String())
				if msg == "" {
					msg = err.Error()
				}
				return fmt.Errorf("backup: pg_dump failed: %s", lastLines(msg, 3))
			}
			if progress != nil {
				progress(Progress{Bytes: size(), Elapsed: time.Since(start), Done: true})
			}
			return nil
		case <-t.C:
			if progress != nil {
				progress(Progress{Bytes: size(), Elapsed: time.Since(start)})
			}
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// DefaultFile is a file name for a dump of db taken at t in dir.
func DefaultFile(dir, db string, t time.Time) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s.dump", db, t.Format("20060102T150405")))
}
