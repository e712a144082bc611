package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Environment variables that give DSNs without putting them in argv.
const (
	EnvOrigin        = "PGREPLICA_ORIGIN"
	EnvReplicaPrefix = "PGREPLICA_REPLICA_" // + the replica's name in capitals
)

// FlagDSN resolves the value of a DSN flag (--origin, --replica): env:VAR
// is the value of the environment variable VAR, @FILE the content of FILE
// (surrounding white space removed), anything else the DSN itself. literal
// reports a DSN given as is with a password in it, which every local user
// can read in ps and /proc: the caller warns.
func FlagDSN(flag, value string) (dsn string, literal bool, err error) {
	switch {
	case strings.HasPrefix(value, "env:"):
		name := strings.TrimPrefix(value, "env:")
		v, ok := os.LookupEnv(name)
		if name == "" || !ok || strings.TrimSpace(v) == "" {
			return "", false, fmt.Errorf("%s env:%s: the environment variable %s is not set", flag, name, name)
		}
		return v, false, nil
	case strings.HasPrefix(value, "@"):
		path := strings.TrimPrefix(value, "@")
		b, err := os.ReadFile(path)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", false, fmt.Errorf("%s @%s: %w", flag, path, err)
		}
		dsn := strings.TrimSpace(string(b))
		if dsn == "" {
			return "", false, fmt.Errorf("%s @%s: the file is empty", flag, path)
		}
		return dsn, false, nil
	}
	_, secrets := splitSecrets(value)
	return value, len(secrets) > 0, nil
}

// EnvReplicas returns the replicas given by PGREPLICA_REPLICA_<NAME>
// variables in environ (as os.Environ gives it), named by NAME in lower
// case, in name order.
func EnvReplicas(environ []string) []Replica {
	var out []Replica
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvReplicaPrefix) || strings.TrimSpace(v) == "" {
			continue
		}
		out = append(out, Replica{Name: strings.ToLower(strings.TrimPrefix(k, EnvReplicaPrefix)), DSN: v})
	}
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ApplyEnv puts the DSNs of the environment over a loaded config:
// PGREPLICA_ORIGIN replaces origin.dsn and PGREPLICA_REPLICA_<NAME> the dsn
// of the replica called name (one the config does not have is an error),
// then validates the result again.
func (c *Config) ApplyEnv(environ []string) error {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == EnvOrigin && strings.TrimSpace(v) != "" {
			c.Origin.DSN = v
		}
	}
	var errs []error
	for _, r := range EnvReplicas(environ) {
		i := slices.IndexFunc(c.Replicas, func(x Replica) bool { return x.Name == r.Name })
		if i < 0 {
			where := c.Path
			if where == "" {
				where = "the config"
			}
			errs = append(errs, fmt.Errorf("%s%s: %s has no replica %q", EnvReplicaPrefix, strings.ToUpper(r.Name), where, r.Name))
			continue
		}
		c.Replicas[i].DSN = r.DSN
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.Validate()
}
