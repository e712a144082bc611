package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CPU accounting that other processes on the machine do not disturb: the
// CPU time of the process trees of the two servers and of the replicator
// daemons, from /proc. A server's finished backends are in its
// postmaster's cutime/cstime (it reaps them).

const clockTicks = 100 // USER_HZ on Linux

type procStat struct {
	ppid int
	own  uint64 // utime + stime
	kids uint64 // cutime + cstime
}

func readProcs() map[int]procStat {
	out := map[int]procStat{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is field 3 (state): ppid is f[1], utime..cstime f[11..14].
		if len(f) < 15 {
			continue
		}
		var v [4]uint64
		for j := range v {
			v[j], _ = strconv.ParseUint(f[11+j], 10, 64)
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = procStat{ppid: ppid, own: v[0] + v[1], kids: v[2] + v[3]}
	}
	return out
}

// treeCPU is the CPU seconds used so far by the trees under roots.
func treeCPU(roots []int) float64 {
	procs := readProcs()
	in := map[int]bool{}
	for _, r := range roots {
		if r > 0 {
			in[r] = true
		}
	}
	var ticks uint64
	for pid, p := range procs {
		for q, depth := pid, 0; q > 1 && depth < 8; q, depth = procs[q].ppid, depth+1 {
			if in[q] {
				ticks += p.own
				if in[pid] {
					ticks += p.kids
				}
				break
			}
		}
	}
	return float64(ticks) / clockTicks
}

// postmasterPID reads a pgtest cluster's postmaster.pid.
func postmasterPID(logFile string) int {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(logFile), "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// cpuRoots are the processes whose trees make the system under test: both
// servers, and the replicator daemons that run now.
func (e *env) cpuRoots() []int {
	roots := []int{postmasterPID(e.origin.LogFile()), postmasterPID(e.replica.LogFile())}
	if e.daemon != nil && e.daemon.cmd.Process != nil {
		roots = append(roots, e.daemon.cmd.Process.Pid)
	}
	if e.slony != nil {
		for _, c := range e.slony.procs {
			if c != nil && c.Process != nil {
				roots = append(roots, c.Process.Pid)
			}
		}
	}
	return roots
}

// cpuMeter measures the CPU of the system under test over a window (the
// callers add what finished subprocesses, pgbench and replicate --once, used).
type cpuMeter struct {
	e     *env
	start map[int]float64
}

func (e *env) cpuStart() *cpuMeter {
	m := &cpuMeter{e: e, start: map[int]float64{}}
	for _, r := range e.cpuRoots() {
		m.start[r] = treeCPU([]int{r})
	}
	return m
}

// settle waits (up to 5 s) until the backends of finished clients
// (pgbench, replicate --once) have exited and been reaped by their
// postmaster, whose cutime then holds their CPU: read before that, a
// backend's CPU can be missed.
func (m *cpuMeter) settle(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	pms := []int{postmasterPID(m.e.origin.LogFile()), postmasterPID(m.e.replica.LogFile())}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := 0
		for _, c := range []*pgx.Conn{m.e.og, m.e.reps[firstKey(m.e.reps)]} {
			var n int
			// The daemon's sessions are alive and counted as such.
			q := `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'
			       OR (application_name LIKE 'pgreplica%' AND NOT $1)`
			if err := c.QueryRow(ctx, q, m.e.daemon != nil).Scan(&n); err == nil {
				busy += n
			}
		}
		if busy == 0 && !hasZombieChildren(pms) {
			// A backend can still be on its way out (gone from
			// pg_stat_activity, not yet a zombie): wait until the servers'
			// children stay the same for 200 ms.
			before := childPIDs(pms)
			time.Sleep(200 * time.Millisecond)
			if before == childPIDs(pms) && !hasZombieChildren(pms) {
				return
			}
			continue
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childPIDs lists the children of parents as one comparable string.
func childPIDs(parents []int) string {
	in := map[int]bool{}
	for _, p := range parents {
		in[p] = true
	}
	procs := readProcs()
	var pids []int
	for pid, p := range procs {
		if in[p.ppid] {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return fmt.Sprint(pids)
}

func hasZombieChildren(parents []int) bool {
	in := map[int]bool{}
	for _, p := range parents {
		in[p] = true
	}
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if in[ppid] && f[0] == "Z" {
			return true
		}
	}
	return false
}

// stop returns the CPU seconds used since start by the roots now running
// (a root started in between counts from zero), in all and by the origin
// server alone. Call it before stopping a daemon.
func (m *cpuMeter) stop(ctx context.Context) (total, origin float64) {
	m.settle(ctx)
	og := postmasterPID(m.e.origin.LogFile())
	for _, r := range m.e.cpuRoots() {
		d := treeCPU([]int{r}) - m.start[r]
		total += d
		if r == og {
			origin = d
		}
	}
	return total, origin
}
