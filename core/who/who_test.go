package who

import "testing"

func TestLocal(t *testing.T) {
	t.Setenv("USER", "alice")
	t.Setenv("SSH_CONNECTION", "")
	if got := Local(); got != "alice" {
		t.Fatalf("Local() = %q, want alice", got)
	}
	t.Setenv("SSH_CONNECTION", "10.0.0.7 51234 10.0.0.1 22")
	if got := Local(); got != "alice from 10.0.0.7" {
		t.Fatalf("Local() = %q, want %q", got, "alice from 10.0.0.7")
	}
}
