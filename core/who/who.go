// Package who names the person behind an action for the audit trail the
// databases keep (a skipped event records who skipped it).
package who

import (
	"os"
	"os/user"
	"strings"
)

// Local is the local user running this process, "alice", or "alice from
// 10.0.0.7" when it runs in an SSH session (from SSH_CONNECTION).
func Local() string {
	name := User()
	if ssh := strings.Fields(os.Getenv("SSH_CONNECTION")); len(ssh) > 0 {
		name += " from " + ssh[0]
	}
	return name
}

// User is the local user's name: $USER, else the account's.
func User() string {
	if name := os.Getenv("USER"); name != "" {
		return name
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
