package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Find returns the config file to use: explicit (from -c) when given, which
// must exist; else ./pgreplica.yaml when it exists; else the only
// /etc/pgreplica/*.yaml. It returns "" and no error when there is no config
// file at all (the caller may build one with FromFlags), and an error that
// lists them when /etc/pgreplica holds several (one per set: each runs as
// its own pgreplica@NAME; commands pick one with -c).
func Find(explicit string) (string, error) {
	return find(explicit, ".", "/etc/pgreplica")
}

func find(explicit, cwd, etcDir string) (string, error) {
	if explicit != "" {
		info, err := os.Stat(explicit)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("config file %s: no such file", explicit)
		case err != nil:
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("config file %s: %w", explicit, err)
		case info.IsDir():
			return "", fmt.Errorf("config file %s: is a directory", explicit)
		}
		return explicit, nil
	}

	if local := filepath.Join(cwd, "pgreplica.yaml"); isFile(local) {
		return local, nil
	}

	var found []string
	matches, _ := filepath.Glob(filepath.Join(etcDir, "*.yaml")) // the pattern is valid
	for _, m := range matches {
		if isFile(m) {
			found = append(found, m)
		}
	}
	slices.Sort(found)
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("several config files in %s, one per replication set (%s): choose one with -c FILE, e.g. -c %s",
		etcDir, strings.Join(found, ", "), found[0])
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir()
}
