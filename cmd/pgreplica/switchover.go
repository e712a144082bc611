package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"pgreplica/core/switchover"
	"pgreplica/core/verify"
)

// testDieAfterStep names the environment variable that makes switchover
// kill itself (SIGKILL) right after the named step is recorded (or at one
// of switchover.PromotePoints inside the promote step), so that the tests
// can interrupt it at each step exactly. TEST-ONLY: nothing in
// pgreplica sets it, and its name says what it does; an operator never
// needs it.
const testDieAfterStep = "PGREPLICA_TEST_DIE_AFTER_STEP"

func (a *app) switchoverCommand() *cobra.Command {
	var opt switchover.Options
	var dryRun, resume, abort bool
	cmd := &cobra.Command{
		Use:   "switchover --to REPLICA",
		Short: "Move the origin role to a replica, nothing lost (planned)",
		Long: `Makes replica REPLICA the origin of the set, in persisted steps:

  1 fence      the origin refuses writes to the replicated tables, with an error
               naming the switchover and the new origin (applications fail fast)
  2 catchup    every replica applies everything (at most --timeout)
  3 sequences  the new origin's sequences are set to the origin's values, and
               never below max() of the columns that use them
  4 promote    capture is installed on the new origin; the old origin becomes
               a replica (named --as, by default REPLICA's name: the two swap
               places) and every replica starts from the new origin's snapshot
  5 config     the config file names the new origin (the old file is kept as
               FILE.bak-TIME)
  6 unfence    the fences are lifted: the new origin takes the writes
  7 verify     every replica is compared with the new origin (result printed)

Before anything changes it refuses, with one line: a name that is not a
replica of the set, a replica that lags more than --max-lag, cannot be read,
or differs from the origin (verify), a table being copied, and a running
daemon of the set: stop the daemon first (systemctl stop pgreplica), and start
it again with the rewritten config once the switchover is done. Fence the
replicas (protect: true) so that an application that reconnects early is
refused until the new origin is ready.

The step reached is kept in FILE.switchover: when the switchover is
interrupted (a crash, a kill, a server that went away), --resume goes on from
there, and --abort goes back to the old origin as long as no fence was
lifted. It asks first: type the replica's name (--yes for scripts).
Exit status: 0 switched over and equal, 3 switched over but verify found
differences, 1 error (the message says which step, and what to run next).`,
		Example: `  pgreplica -c shop.yaml switchover --to reporting --dry-run
  systemctl stop pgreplica &&
    pgreplica -c shop.yaml switchover --to reporting &&
    systemctl start pgreplica
  pgreplica -c shop.yaml switchover --resume
  pgreplica -c shop.yaml switchover --abort --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			modes := 0
			for _, b := range []bool{opt.To != "", resume, abort} {
				if b {
					modes++
				}
			}
			if modes != 1 {
				return usagef("switchover needs exactly one of --to REPLICA, --resume and --abort")
			}
			if dryRun && opt.To == "" {
				return usagef("--dry-run goes with --to")
			}
			path, err := a.configFile()
			if err != nil {
				return err
			}
			opt.Environ = os.Environ()
			opt.Report = a.line
			if err := testDieHook(&opt); err != nil {
				return err
			}
			ctx := cmd.Context()
			var res verify.Result
			switch {
			case abort:
				if path == "" {
					return usagef("switchover --abort needs the config file (-c FILE)")
				}
				if err := a.confirm("Abort the switchover and go back to the old origin?"); err != nil {
					return err
				}
				return switchover.Abort(ctx, path, opt)
			case resume:
				if path == "" {
					return usagef("switchover --resume needs the config file (-c FILE)")
				}
				if res, err = switchover.Resume(ctx, path, opt); err != nil {
					return err
				}
			default:
				plan, err := switchover.Prepare(ctx, path, opt)
				if err != nil {
					return err
				}
				for _, l := range plan.Lines() {
					a.line(l)
				}
				if dryRun {
					a.line("dry run: nothing was changed")
					return nil
				}
				if err := a.confirmTyped(fmt.Sprintf("Type %s to make it the origin of set %s: ", opt.To, plan.State().Set), opt.To); err != nil {
					return err
				}
				if res, err = plan.Run(ctx); err != nil {
					return err
				}
			}
			if !res.Equal {
				return &codeError{code: exitProblems, err: errors.New("switched over, but verify found differences: pgreplica verify --repair")}
			}
			a.line("switched over: every replica equals the new origin; start the daemon with the rewritten config")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.To, "to", "", "the replica that becomes the origin")
	f.StringVar(&opt.As, "as", "", "the old origin's name as a replica (default: the --to replica's name)")
	f.DurationVar(&opt.MaxLag, "max-lag", switchover.DefaultMaxLag, "refuse when a replica lags more than this")
	f.DurationVar(&opt.Timeout, "timeout", switchover.DefaultTimeout, "how long the fenced origin waits for the replicas to apply everything")
	f.BoolVar(&dryRun, "dry-run", false, "check and print the plan; change nothing")
	f.BoolVar(&resume, "resume", false, "finish an interrupted switchover")
	f.BoolVar(&abort, "abort", false, "undo an interrupted switchover (before its fences were lifted)")
	a.addYesFlag(cmd)
	return cmd
}

// confirmTyped asks for want to be typed on the terminal; --yes answers.
// Without a terminal and without --yes it refuses.
func (a *app) confirmTyped(prompt, want string) error {
	if a.yes {
		return nil
	}
	if !isTerminal(a.stdin) {
		return usagef("%s: refusing without --yes (standard input is not a terminal)", strings.TrimSpace(strings.TrimSuffix(prompt, ": ")))
	}
	fmt.Fprint(a.stderr, prompt)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if strings.TrimSpace(line) == want {
		return nil
	}
	return &codeError{code: exitErr, err: errors.New("cancelled: the name typed was not " + want)}
}

// runSwitchover is the switchover of the TUI's monitor: the checks, the
// plan and the steps, every line reported.
func runSwitchover(ctx context.Context, path string, opt switchover.Options) error {
	plan, err := switchover.Prepare(ctx, path, opt)
	if err != nil {
		return err
	}
	for _, l := range plan.Lines() {
		opt.Report(l)
	}
	res, err := plan.Run(ctx)
	if err != nil {
		return err
	}
	if !res.Equal {
		return errors.New("switched over, but verify found differences: pgreplica verify --repair")
	}
	return nil
}

// testDieHook sets opt's hooks from testDieAfterStep (TEST-ONLY): the
// process kills itself with SIGKILL after the step, or at the point, that
// the variable names. Unset, it does nothing.
func testDieHook(opt *switchover.Options) error {
	v := os.Getenv(testDieAfterStep)
	if v == "" {
		return nil
	}
	die, ok := switchover.ParseStep(v)
	if !ok && !slices.Contains(switchover.PromotePoints, v) && !slices.Contains(switchover.FailoverPoints, v) {
		return fmt.Errorf("%s=%s: no such step", testDieAfterStep, v)
	}
	kill := func() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	opt.AfterStep = func(s switchover.Step) {
		if ok && s == die {
			kill()
		}
	}
	opt.At = func(point string) {
		if point == v {
			kill()
		}
	}
	return nil
}
