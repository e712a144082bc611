package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemoNoTUI runs the README's first command headless: two throwaway
// clusters, the sample shop, a workload, then a row-by-row comparison.
func TestDemoNoTUI(t *testing.T) {
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--no-tui", "--duration", "10s")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	o := out.String()
	if !strings.Contains(o, "OK replica equals origin: 5 tables") {
		t.Fatalf("no verified result:\n%s\nstderr:\n%s", o, errb.String())
	}
	if !strings.Contains(o, "write transactions on the origin") {
		t.Errorf("no progress lines:\n%s", o)
	}
	if !strings.Contains(errb.String(), "stopping and removing both clusters") {
		t.Errorf("clusters not removed:\n%s", errb.String())
	}
}

func TestDemoRejectsBadRate(t *testing.T) {
	_, stderr, code := cli(t, "", "demo", "--no-tui", "--rate", "0")
	if code != exitUsage || !strings.Contains(stderr, "--rate") {
		t.Fatalf("code %d, stderr %s", code, stderr)
	}
}
