// Package pgcluster starts throwaway PostgreSQL clusters for tests and the
// demo. It does not import package testing, so the shipped binary can use
// it (pgreplica demo); core/pgtest adds the helpers that tests share.
//
// A Cluster is a real server started with the machine's initdb and pg_ctl on
// a free TCP port on 127.0.0.1 and a unix socket in its own temporary
// directory. When the process runs as root the server runs as the
// "postgres" user (PostgreSQL refuses to run as root). Clusters are removed
// by Stop. Tests may instead point at servers of their own with the
// environment variables PGREPLICA_TEST_ORIGIN and PGREPLICA_TEST_REPLICA
// (libpq DSNs of a superuser); databases are then created inside them.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tune a new cluster.
type Options struct {
	// Settings are extra postgresql.conf lines, e.g. "TimeZone = 'Asia/Tokyo'".
	Settings []string
}

// Cluster is one running PostgreSQL server.
type Cluster struct {
	Name    string
	Host    string
	Port    int
	User    string
	dataDir string // empty for an external server
	sockDir string
	bin     string
	owned   bool
	extDSN  string
	seq     atomic.Int64
}

// PasswordUser is a role that must log in with PasswordUserPassword over
// TCP, for tests of authentication errors.
const (
	PasswordUser         = "pgreplica_pw"
	PasswordUserPassword = "s3cret-pw"
)

// ErrNoServer is returned when no PostgreSQL server binaries are found.
var ErrNoServer = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found; " +
	"install them (Debian/Ubuntu: apt-get install -y postgresql) or put their directory on PATH")

// BinDir finds the directory holding initdb and pg_ctl: $PG_BINDIR, then
// PATH, then the newest /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoServer
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func runningAsRoot() bool { return os.Geteuid() == 0 }

// command runs a server binary, as the postgres user when we are root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if runningAsRoot() {
		args = append([]string{"-u", "postgres", "--", path}, args...)
		path = "runuser"
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	return cmd
}

func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Start initialises and starts a new cluster in a temporary directory.
func Start(ctx context.Context, name string, opt Options) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgreplica-"+name+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Host: "127.0.0.1", User: "postgres", bin: bin, owned: true,
		dataDir: filepath.Join(dir, "data"), sockDir: dir}
	if runningAsRoot() {
		if err := chownPostgres(dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := run(c.command(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb %s: %w", name, err)
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + dir + "'",
		"fsync = off", "synchronous_commit = off", "full_page_writes = off",
		"max_connections = 100", "shared_buffers = 64MB",
		"log_min_messages = warning", "logging_collector = off",
	}
	conf = append(conf, opt.Settings...)
	if err := appendFile(filepath.Join(c.dataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	hba := "local all all trust\n" +
		"host all " + PasswordUser + " 127.0.0.1/32 scram-sha-256\n" +
		"host all all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(c.dataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if runningAsRoot() {
		if err := chownPostgres(filepath.Join(c.dataDir, "pg_hba.conf")); err != nil {
			return nil, err
		}
	}
	// A free port can be taken by someone else before the server binds it: retry.
	for attempt := 0; ; attempt++ {
		if c.Port, err = FreePort(); err != nil {
			return nil, err
		}
		if err = c.startServer(ctx); err == nil {
			break
		}
		if attempt == 4 {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start cluster %s: %w", name, err)
		}
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("connect to cluster %s: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'", PasswordUser, PasswordUserPassword))
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("create role on %s: %w", name, err)
	}
	return c, nil
}

// External wraps a server given by a DSN (of a superuser).
func External(name, dsn string) (*Cluster, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Cluster{Name: name, Host: cfg.Host, Port: int(cfg.Port), User: cfg.User, extDSN: dsn}, nil
}

func chownPostgres(path string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres user to run the server: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *Cluster) startServer(ctx context.Context) error {
	logFile := filepath.Join(c.sockDir, "server.log")
	return run(c.command(ctx, "pg_ctl", "-D", c.dataDir, "-l", logFile, "-w", "-t", "60",
		"-o", "-p "+strconv.Itoa(c.Port), "start"))
}

// Restart stops the server (mode "fast" or "immediate") and starts it again
// on the same port.
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	if !c.owned {
		return errors.New("cannot restart an external server")
	}
	if err := c.StopServer(ctx, mode); err != nil {
		return err
	}
	return c.StartServer(ctx)
}

// StopServer stops the server but keeps its data.
func (c *Cluster) StopServer(ctx context.Context, mode string) error {
	if !c.owned {
		return errors.New("cannot stop an external server")
	}
	return run(c.command(ctx, "pg_ctl", "-D", c.dataDir, "-m", mode, "-w", "stop"))
}

// StartServer starts a stopped server on its port.
func (c *Cluster) StartServer(ctx context.Context) error {
	return c.startServer(ctx)
}

// Stop stops the server and removes its directory. Safe to call twice.
func (c *Cluster) Stop() {
	if !c.owned || c.dataDir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = run(c.command(ctx, "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop"))
	os.RemoveAll(c.sockDir)
	c.dataDir = ""
}

// DataDir is the cluster's data directory, "" for an external server.
func (c *Cluster) DataDir() string { return c.dataDir }

// BinDir is the directory of the server binaries (pg_dump, pgbench, ...).
func (c *Cluster) BinDir() string { return c.bin }

// LogFile is the server's log file (empty for an external server).
func (c *Cluster) LogFile() string {
	if !c.owned {
		return ""
	}
	return filepath.Join(c.sockDir, "server.log")
}

// DSN is a libpq key/value connection string for database db over TCP.
func (c *Cluster) DSN(db string) string {
	if !c.owned {
		cfg, _ := pgx.ParseConfig(c.extDSN)
		return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, quoteDSN(db)) +
			passwordPart(cfg.Password)
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.Host, c.Port, c.User, quoteDSN(db))
}

func passwordPart(pw string) string {
	if pw == "" {
		return ""
	}
	return " password=" + quoteDSN(pw)
}

func quoteDSN(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// CreateDB creates a new empty database with a unique name and returns its name.
func (c *Cluster) CreateDB(ctx context.Context, prefix string) (string, error) {
	name := fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), c.seq.Add(1))
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", c.Name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s on %s: %w", name, c.Name, err)
	}
	return name, nil
}

// Exec runs SQL in database db, for test setup.
func (c *Cluster) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}
