package replay

import (
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Snapshot is an origin transaction snapshot (pg_snapshot) in Go: every
// transaction below Xmin has finished, none at or above Xmax had started,
// and those in Xip were still running when it was taken. A replica's
// position is a snapshot: the transactions visible in it are applied.
type Snapshot struct {
	Xmin, Xmax uint64
	Xip        []uint64 // sorted
}

// ParseSnapshot reads pg_snapshot's text form "xmin:xmax:xip,xip".
func ParseSnapshot(s string) (Snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Snapshot{}, fmt.Errorf("snapshot %q: want xmin:xmax:xip", s)
	}
	var snap Snapshot
	var err error
	if snap.Xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: xmin: %w", s, err)
	}
	if snap.Xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: xmax: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return Snapshot{}, fmt.Errorf("snapshot %q: xip: %w", s, err)
			}
			snap.Xip = append(snap.Xip, v)
		}
		slices.Sort(snap.Xip)
	}
	if snap.Xmin > snap.Xmax {
		return Snapshot{}, fmt.Errorf("snapshot %q: xmin above xmax", s)
	}
	return snap, nil
}

// String is pg_snapshot's text form.
func (s Snapshot) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(s.Xmin, 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(s.Xmax, 10))
	b.WriteByte(':')
	for i, x := range s.Xip {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(x, 10))
	}
	return b.String()
}

// IsZero reports whether s was never set.
func (s Snapshot) IsZero() bool { return s.Xmax == 0 }

// Visible reports whether transaction txid had committed (or aborted) when
// the snapshot was taken, as pg_visible_in_snapshot does.
func (s Snapshot) Visible(txid uint64) bool {
	if txid < s.Xmin {
		return true
	}
	if txid >= s.Xmax {
		return false
	}
	_, running := slices.BinarySearch(s.Xip, txid)
	return !running
}

// Covers reports whether every transaction visible in o is visible in s.
func (s Snapshot) Covers(o Snapshot) bool {
	if o.Xmax <= s.Xmin {
		return true
	}
	if o.Xmax > s.Xmax {
		return false
	}
	// Visible in o: below o.Xmin, or in [o.Xmin, o.Xmax) and not in o.Xip.
	// Each must be visible in s: it suffices that s's running list holds
	// only transactions that o also saw running.
	for _, x := range s.Xip {
		if x < o.Xmax && o.Visible(x) {
			return false
		}
	}
	return true
}

// Value makes a Snapshot a query parameter (text, cast with ::pg_snapshot).
func (s Snapshot) Value() (driver.Value, error) { return s.String(), nil }

// Scan reads a snapshot from its text form.
func (s *Snapshot) Scan(src any) error {
	switch v := src.(type) {
	case string:
		p, err := ParseSnapshot(v)
		*s = p
		return err
	case []byte:
		p, err := ParseSnapshot(string(v))
		*s = p
		return err
	case nil:
		*s = Snapshot{}
		return nil
	}
	return fmt.Errorf("scan snapshot from %T", src)
}

// MarshalText writes the snapshot in pg_snapshot's text form (JSON, logs).
func (s Snapshot) MarshalText() ([]byte, error) {
	if s.IsZero() {
		return []byte{}, nil
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads pg_snapshot's text form; empty is the zero snapshot.
func (s *Snapshot) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = Snapshot{}
		return nil
	}
	p, err := ParseSnapshot(string(b))
	*s = p
	return err
}
