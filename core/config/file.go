package config

import "fmt"

// Connected returns the replicas that pgreplica reaches through a
// connection: every replica but the file replicas.
func (c *Config) Connected() []Replica {
	var out []Replica
	for _, r := range c.Replicas {
		if !r.File {
			out = append(out, r)
		}
	}
	return out
}

// FileReplica returns the file replica called name.
func (c *Config) FileReplica(name string) (Replica, error) {
	r, err := c.Replica(name)
	if err != nil {
		return Replica{}, err
	}
	if !r.File {
		return Replica{}, fmt.Errorf("replica %s is not a file replica: it is reached through its dsn (the engine feeds it); set file: true and remove its dsn to feed it with bundles", name)
	}
	return r, nil
}
