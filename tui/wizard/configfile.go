package wizard

import (
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"pgreplica/core/config"
	"pgreplica/core/pg"
)

type fileConfig struct {
	Name     string           `yaml:"name"`
	Origin   config.Endpoint  `yaml:"origin"`
	Replicas []config.Replica `yaml:"replicas"`
	Tables   config.Tables    `yaml:"tables"`
	Control  *config.Control  `yaml:"control,omitempty"`
}

// WriteConfig writes cfg's set, databases and tables to path (mode 0600:
// a DSN may hold a password). An existing file is kept as path.bak first.
func WriteConfig(path string, cfg *config.Config) error {
	fc := fileConfig{Name: cfg.Name, Origin: cfg.Origin, Replicas: cfg.Replicas, Tables: cfg.Tables}
	if cfg.Control.Socket != "" {
		fc.Control = &cfg.Control
	}
	data, err := yaml.Marshal(fc)
	if err != nil {
		return err
	}
	text := "# pgreplica configuration, written by the install wizard.\n# See configs/example.yaml for every setting.\n" + string(data)
	if old, err := os.ReadFile(path); err == nil {
		if string(old) == text {
			return nil
		}
		if err := os.WriteFile(path+".bak", old, 0o600); err != nil {
			return fmt.Errorf("keep the old config as %s.bak: %w", path, err)
		}
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	// Check that what was written loads back.
	if _, err := config.Load(path); err != nil {
		return fmt.Errorf("the written config does not load: %w", err)
	}
	return nil
}

// Pattern is an include pattern matching exactly table t (glob characters
// escaped).
func Pattern(t pg.Table) string {
	esc := func(s string) string {
		r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
		return r.Replace(s)
	}
	return esc(t.Schema) + "." + esc(t.Name)
}
