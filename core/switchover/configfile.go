package switchover

import (
	"bytes"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"pgreplica/core/config"
)

// swappedConfig is the config file's text with the origin role moved to
// replica to: origin.dsn and that replica's dsn change places, and the
// replica entry (now the old origin) is renamed as, when as differs. Every
// other key, comment and replica stays as written.
func swappedConfig(data []byte, to, as string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("not a mapping")
	}
	root := doc.Content[0]
	origin := value(root, "origin")
	if origin == nil {
		return nil, fmt.Errorf("no origin")
	}
	odsn := value(origin, "dsn")
	replicas := value(root, "replicas")
	if odsn == nil || replicas == nil || replicas.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("no origin.dsn or replicas")
	}
	var entry *yaml.Node
	for _, r := range replicas.Content {
		if n := value(r, "name"); n != nil && n.Value == to {
			entry = r
		}
	}
	if entry == nil {
		return nil, fmt.Errorf("no replica %s", to)
	}
	rdsn, name := value(entry, "dsn"), value(entry, "name")
	if rdsn == nil {
		return nil, fmt.Errorf("replica %s has no dsn", to)
	}
	odsn.Value, rdsn.Value = rdsn.Value, odsn.Value
	odsn.Style, rdsn.Style = yaml.DoubleQuotedStyle, yaml.DoubleQuotedStyle
	name.Value = as
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// value is the value node of key in mapping m.
func value(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeConfig writes the rewritten config to path (atomically, with the
// mode of the file it replaces) after checking that it loads.
func writeConfig(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := config.Load(tmp); err != nil {
		return fmt.Errorf("the rewritten config does not load: %w", err)
	}
	return writeAtomic(path, data, mode)
}

// removedOriginConfig is the config file's text after the failover to
// replica to: origin.dsn is that replica's, and its entry is gone.
func removedOriginConfig(data []byte, to string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("not a mapping")
	}
	root := doc.Content[0]
	odsn := value(value(root, "origin"), "dsn")
	replicas := value(root, "replicas")
	if odsn == nil || replicas == nil || replicas.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("no origin.dsn or replicas")
	}
	for i, r := range replicas.Content {
		if n := value(r, "name"); n != nil && n.Value == to {
			rdsn := value(r, "dsn")
			if rdsn == nil {
				return nil, fmt.Errorf("replica %s has no dsn", to)
			}
			odsn.Value, odsn.Style = rdsn.Value, yaml.DoubleQuotedStyle
			replicas.Content = append(replicas.Content[:i:i], replicas.Content[i+1:]...)
			if len(replicas.Content) == 0 {
				replicas.Style = yaml.FlowStyle
			}
			var out bytes.Buffer
			enc := yaml.NewEncoder(&out)
			enc.SetIndent(2)
			if err := enc.Encode(&doc); err != nil {
				return nil, err
			}
			if err := enc.Close(); err != nil {
				return nil, err
			}
			return out.Bytes(), nil
		}
	}
	return nil, fmt.Errorf("no replica %s", to)
}
