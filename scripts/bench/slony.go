package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// slony is a two-node Slony-I cluster: node 1 is the origin database,
// node 2 the replica database rep_slony, one set with the bench tables, and
// a slon daemon per node, started and stopped by the scenarios.
type slony struct {
	e     *env
	slon  string
	conn  [3]string // conninfo of node 1 and 2
	procs [3]*exec.Cmd
	dead  [3]chan struct{}
}

// slonOptions: a SYNC every 100 ms when there are changes (the default is
// 2 s, which puts the replica seconds behind), one at least every second.
var slonOptions = []string{"-s", "100", "-t", "1000"}

func setupSlony(ctx context.Context, e *env) (*slony, error) {
	slonik, err := exec.LookPath("slonik")
	if err != nil {
		return nil, errors.New("slonik not found: install postgresql-15-slony1-2 and slony1-2-bin (scripts/bench.sh --with-slony does)")
	}
	s := &slony{e: e}
	if s.slon, err = exec.LookPath("slon"); err != nil {
		return nil, errors.New("slon not found (Debian package slony1-2-bin)")
	}
	s.conn[1] = e.origin.DSN(originDB)
	s.conn[2] = e.replica.DSN(replicaDB("slony"))
	var b strings.Builder
	fmt.Fprintf(&b, "cluster name = %s;\n", slonyName)
	fmt.Fprintf(&b, "node 1 admin conninfo = '%s';\nnode 2 admin conninfo = '%s';\n", s.conn[1], s.conn[2])
	preamble := b.String()
	fmt.Fprintf(&b, "init cluster (id = 1, comment = 'origin');\n")
	fmt.Fprintf(&b, "store node (id = 2, comment = 'replica', event node = 1);\n")
	fmt.Fprintf(&b, "store path (server = 1, client = 2, conninfo = '%s');\n", s.conn[1])
	fmt.Fprintf(&b, "store path (server = 2, client = 1, conninfo = '%s');\n", s.conn[2])
	fmt.Fprintf(&b, "create set (id = 1, origin = 1, comment = 'bench tables');\n")
	for i, t := range benchTables {
		fmt.Fprintf(&b, "set add table (set id = 1, origin = 1, id = %d, fully qualified name = 'public.%s');\n", i+1, t)
	}
	if err := runSlonik(ctx, slonik, e.work, "init", b.String()); err != nil {
		return nil, err
	}
	s.start(1)
	s.start(2)
	if err := runSlonik(ctx, slonik, e.work, "subscribe",
		preamble+"subscribe set (id = 1, provider = 1, receiver = 2, forward = no);\n"); err != nil {
		s.stop()
		return nil, err
	}
	if err := e.setMode(ctx, "slony"); err != nil {
		s.stop()
		return nil, err
	}
	// The subscription copies the tables; a probe row past it shows it is done.
	if err := s.sync(ctx, 10*time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	s.stop()
	return s, nil
}

func runSlonik(ctx context.Context, slonik, dir, name, script string) error {
	path := filepath.Join(dir, "slonik-"+name+".txt")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, slonik, path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("slonik %s: %w\n%s", name, err, tail(string(out), 20))
	}
	return nil
}

// start runs the slon daemon of node n (when not running).
func (s *slony) start(n int) error {
	if s.procs[n] != nil {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(s.e.work, "slon"+strconv.Itoa(n)+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := append(append([]string{}, slonOptions...), slonyName, s.conn[n])
	cmd := exec.Command(s.slon, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	dead := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(dead) }()
	s.procs[n], s.dead[n] = cmd, dead
	return nil
}

// stopNode stops the slon daemon of node n: TERM to its process group (slon
// forks a worker), KILL after 30 s.
func (s *slony) stopNode(n int) {
	cmd := s.procs[n]
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.dead[n]:
	case <-time.After(30 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-s.dead[n]
	}
	// The worker child may outlive the parent briefly.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	s.procs[n] = nil
}

func (s *slony) stop() {
	s.stopNode(2)
	s.stopNode(1)
}

func (s *slony) startAll() error {
	if err := s.start(1); err != nil {
		return err
	}
	return s.start(2)
}

// sync waits (with both daemons running and the slony triggers enabled)
// until the replica has everything logged so far.
func (s *slony) sync(ctx context.Context, timeout time.Duration) error {
	if err := s.startAll(); err != nil {
		return err
	}
	id, err := s.e.marker(ctx)
	if err != nil {
		return err
	}
	_, err = s.e.waitFor(ctx, "slony", id, timeout)
	return err
}
