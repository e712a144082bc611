// Command pgreplica is a trigger-based asynchronous replicator for
// PostgreSQL. With no arguments in a terminal it opens the operator's TUI;
// every TUI action is also a subcommand. This package is flag parsing and
// wiring only: the work is done in core/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK       = 0
	exitErr      = 1
	exitUsage    = 2
	exitProblems = 3 // check, verify or smoke found problems
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ex *codeError
	if errors.As(err, &ex) {
		if ex.err != nil {
			printError(stderr, ex.err)
		}
		return ex.code
	}
	var ue *usageError
	if errors.As(err, &ue) || isFlagError(err) {
		fmt.Fprintf(stderr, "Error: %v\nRun '%s --help' for usage.\n", err, commandPath(root, args))
		return exitUsage
	}
	printError(stderr, err)
	return exitErr
}

// printError prints "Error: ..." and, when the error carries one, "Try: ...".
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "Error: %v\n", err)
	var h *hintError
	if errors.As(err, &h) {
		fmt.Fprintf(w, "Try: %s\n", h.hint)
	}
}

// exitErr ends the program with a code; err, if set, is printed.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// usageError is a wrong command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// hintError is an error with an operator hint, printed as "Try: ...".
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }
