package switchover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Step is one persisted step of a switchover, in the order they run.
type Step int

const (
	Planned   Step = iota // the state file and the config backup exist; nothing else changed
	Fence                 // writes to the replicated tables refused on the origin
	CatchUp               // every replica applied everything the origin committed
	Sequences             // the new origin's sequences at the origin's values (and above every used value)
	Promote               // capture on the new origin, replica side on the old one, positions at one snapshot
	Config                // the config file names the new origin (the old one kept as a backup)
	Unfence               // the fences lifted: the new origin takes writes
	Verify                // verify ran on the new set; the state file is removed after it
)

var stepNames = []string{"planned", "fence", "catchup", "sequences", "promote", "config", "unfence", "verify"}

// String is the step's name, as PGREPLICA_TEST_DIE_AFTER_STEP and the
// messages spell it.
func (s Step) String() string {
	if s < 0 || int(s) >= len(stepNames) {
		return fmt.Sprintf("step %d", int(s))
	}
	return stepNames[s]
}

// ParseStep is the step called name.
func ParseStep(name string) (Step, bool) {
	for i, n := range stepNames {
		if n == name {
			return Step(i), true
		}
	}
	return 0, false
}

// Steps lists every step after Planned.
func Steps() []Step { return []Step{Fence, CatchUp, Sequences, Promote, Config, Unfence, Verify} }

// SavedPosition is a replica's position row as it was before the promote
// step changed it, for --abort.
type SavedPosition struct {
	Exists        bool    `json:"exists"`
	Snapshot      string  `json:"snapshot,omitempty"`
	Target        *string `json:"target,omitempty"`
	LastID        *int64  `json:"last_id,omitempty"`
	AppliedEvents int64   `json:"applied_events"`
	AppliedAt     string  `json:"applied_at,omitempty"`
}

// State is what a switchover persists in its state file next to the
// config (CONFIG.switchover), written atomically after every step: the
// databases' changes of each step are idempotent, so --resume runs the step
// after Done again from its start, and --abort undoes what Done says was
// reached. It holds no DSN (they are in the config backup) and no secret.
type State struct {
	Set       string                   `json:"set"`
	To        string                   `json:"to"`                  // the replica that becomes the origin
	As        string                   `json:"as"`                  // the old origin's name as a replica
	Config    string                   `json:"config"`              // the config file
	Backup    string                   `json:"backup"`              // the config as it was before the switchover
	Started   time.Time                `json:"started"`             // when it was planned
	Done      Step                     `json:"done"`                // the last step completed
	Unfencing bool                     `json:"unfencing"`           // the unfence step began: writes may reach the new origin
	MaxLag    string                   `json:"max_lag"`             // as given
	Timeout   string                   `json:"timeout"`             // the catch-up bound
	Snapshot  string                   `json:"snapshot"`            // the new origin's snapshot every position starts from
	FenceAt   string                   `json:"fence_at"`            // the origin's snapshot taken once the fence was up
	Saved     map[string]SavedPosition `json:"saved,omitempty"`     // positions before promote, by node ("origin" for the old origin)
	OldOrigin SavedPosition            `json:"old_origin_position"` // the old origin's own position row for the set, before promote
}

// StatePath is the state file of the switchover of the config at path.
func StatePath(configPath string) string { return configPath + ".switchover" }

// ReadState reads the state file of the config at path; nil when no
// switchover is under way.
func ReadState(configPath string) (*State, error) {
	data, err := os.ReadFile(StatePath(configPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("switchover state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("switchover state %s: %w (move it away only once the set is known to be consistent)", StatePath(configPath), err)
	}
	return &s, nil
}

// save writes the state file atomically (a temp file renamed over it,
// both synced), so a SIGKILL leaves the old state or the new one.
func (s *State) save() error {
	path := StatePath(s.Config)
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("switchover state: %w", err)
	}
	return nil
}

func (s *State) remove() error {
	if err := os.Remove(StatePath(s.Config)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("switchover state: %w", err)
	}
	return nil
}

// writeAtomic writes data to path through a temp file in the same
// directory, synced and renamed, then syncs the directory.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
