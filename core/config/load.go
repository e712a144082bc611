package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path over the defaults, rejecting unknown keys,
// and validates the result. Every error starts with path and, where known,
// the line: "pgreplica.yaml:3: unknown key "replcas"". Several problems are
// joined with errors.Join, one line each. Load does not require a replica;
// see RequireReplicas.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config file %s: no such file", path)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}

	// The node tree gives syntax errors and the line of every field.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(path, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		return nil, fmt.Errorf("%s: empty config", path)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping of keys such as name:, origin: and replicas: (got %s)", path, root.Line, describeNode(root))
	}

	// yaml.v3 truncates a float decoded into an integer (1.5 becomes 1):
	// integers must be written as integers.
	if err := wholeNumbers(path, root, "batch.max_events", "batch.max_bytes"); err != nil {
		return nil, err
	}

	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := decodeError(path, root, dec.Decode(&c), &c); err != nil {
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, syntaxError(path, err)
	case len(next.Content) > 0:
		return nil, fmt.Errorf("%s:%d: a second YAML document, want one", path, next.Line)
	}
	c.Path = path
	placeRules(&c, root)

	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, errors.New(location(path, lineOf(root, p.field))+p.String()))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// wholeNumbers reports the fields, among those named, whose value is not
// written as an integer.
func wholeNumbers(path string, root *yaml.Node, fields ...string) error {
	var errs []error
	for _, f := range fields {
		n := nodeOf(root, f)
		if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!int" || n.ShortTag() == "!!str" {
			continue // absent, or an error the decoder reports
		}
		errs = append(errs, fmt.Errorf("%s%s: want a whole number (got %s)", location(path, n.Line), f, describeNode(n)))
	}
	return errors.Join(errs...)
}

// nodeOf is the value node of a dotted field of mappings ("batch.max_events").
func nodeOf(root *yaml.Node, field string) *yaml.Node {
	n := root
	for step := range strings.SplitSeq(field, ".") {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == step {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// location is "path:line: ", or "path: " when the line is unknown (0).
func location(path string, line int) string {
	if line <= 0 {
		return path + ": "
	}
	return fmt.Sprintf("%s:%d: ", path, line)
}

// splitLine splits yaml.v3's "[yaml: ]line N: message" into N and message.
func splitLine(msg string) (int, string) {
	msg = strings.TrimPrefix(msg, "yaml: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, msg
	}
	num, text, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, msg
	}
	return n, text
}

func syntaxError(path string, err error) error {
	line, msg := splitLine(err.Error())
	return fmt.Errorf("%sinvalid YAML: %s", location(path, line), msg)
}

// decodeError translates the errors of a strict decode into c into one line
// each. yaml.v3 decodes durations from strings only; a plain 0 is accepted
// too, since 0 is how purge.interval is turned off.
func decodeError(path string, root *yaml.Node, err error, c *Config) error {
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(path, err)
	}
	var errs []error
	for _, e := range te.Errors {
		line, msg := splitLine(e)
		if msg == "cannot unmarshal !!int `0` into time.Duration" {
			switch field, _ := findValue(root, "", line, "int", "0"); field {
			case "poll_interval":
				c.PollInterval = 0
				continue
			case "purge.interval":
				c.Purge.Interval = 0
				continue
			case "serve.ssh.idle_timeout":
				c.Serve.SSH.IdleTimeout = 0
				continue
			}
		}
		errs = append(errs, errors.New(location(path, line)+typeErrorText(root, line, msg)))
	}
	return errors.Join(errs...)
}

func typeErrorText(root *yaml.Node, line int, msg string) string {
	// "field replcas not found in type config.Config"
	if rest, ok := strings.CutPrefix(msg, "field "); ok {
		name, _, _ := strings.Cut(rest, " not found in type ")
		field, ok := findKey(root, "", line, name)
		if !ok {
			field = name
		}
		return fmt.Sprintf("unknown key %q", field)
	}
	// "mapping key "name" already defined at line 1"
	var key string
	var first int
	if _, err := fmt.Sscanf(msg, "mapping key %q already defined at line %d", &key, &first); err == nil {
		return fmt.Sprintf("duplicate key %q (first at line %d)", key, first)
	}
	// "cannot unmarshal !!str `abc` into time.Duration"; long values are
	// cut to their first 7 characters and "...".
	if rest, ok := strings.CutPrefix(msg, "cannot unmarshal !!"); ok {
		i := strings.LastIndex(rest, " into ")
		if i < 0 {
			return msg
		}
		goType := rest[i+len(" into "):]
		tag, value, _ := strings.Cut(rest[:i], " ")
		value = strings.TrimSuffix(strings.Trim(value, "`"), "...")
		if field, node := findValue(root, "", line, tag, value); node != nil {
			return fmt.Sprintf("%s: want %s (got %s)", field, describeType(goType), describeNode(node))
		}
	}
	return msg
}

// describeType names a Go type from a yaml.v3 message for people.
func describeType(goType string) string {
	switch {
	case goType == "time.Duration":
		return "a duration such as 500ms, 5s, 1m or 1h30m"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	default:
		return "a mapping"
	}
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

// findKey returns the dotted field path of the mapping key called name on
// the given line, searching below n; prefix is the path of n.
func findKey(n *yaml.Node, prefix string, line int, name string) (string, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			field := joinField(prefix, k.Value)
			if k.Line == line && k.Value == name {
				return field, true
			}
			if f, ok := findKey(v, field, line, name); ok {
				return f, true
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if f, ok := findKey(item, fmt.Sprintf("%s[%d]", prefix, i), line, name); ok {
				return f, true
			}
		}
	}
	return "", false
}

// findValue returns the field path and node of the deepest value below n on
// the given line whose YAML tag is tag ("str", "seq"...) and whose text
// starts with value; prefix is the path of n.
func findValue(n *yaml.Node, prefix string, line int, tag, value string) (string, *yaml.Node) {
	var children []*yaml.Node
	var fields []string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			children = append(children, n.Content[i+1])
			fields = append(fields, joinField(prefix, n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			children = append(children, item)
			fields = append(fields, fmt.Sprintf("%s[%d]", prefix, i))
		}
	}
	for i, child := range children {
		if f, found := findValue(child, fields[i], line, tag, value); found != nil {
			return f, found
		}
		if child.Line == line && child.ShortTag() == "!!"+tag && strings.HasPrefix(child.Value, value) {
			return fields[i], child
		}
	}
	return "", nil
}

func joinField(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// lineOf returns the line of a field such as "replicas[0].dsn" below the
// root mapping: the line of its key, or of its list item. A field that is
// absent takes the line of its closest present parent; 0 when none is.
func lineOf(root *yaml.Node, field string) int {
	n, line := root, 0
	for _, step := range fieldSteps(field) {
		var next *yaml.Node
		if strings.HasPrefix(step, "[") {
			i, _ := strconv.Atoi(strings.Trim(step, "[]"))
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return line
			}
			next = n.Content[i]
			line = next.Line
		} else {
			if n.Kind != yaml.MappingNode {
				return line
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == step {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
			if next == nil {
				return line
			}
		}
		n = next
	}
	return line
}

// fieldSteps splits "replicas[0].dsn" into "replicas", "[0]", "dsn".
func fieldSteps(field string) []string {
	var steps []string
	for part := range strings.SplitSeq(field, ".") {
		key, index, _ := strings.Cut(part, "[")
		steps = append(steps, key)
		if index != "" {
			steps = append(steps, "["+index)
		}
	}
	return steps
}

// placeRules records where each replica's table rules are written, for the
// errors that install finds in them (a filter PostgreSQL refuses).
func placeRules(c *Config, root *yaml.Node) {
	for i := range c.Replicas {
		for j := range c.Replicas[i].Tables {
			r := &c.Replicas[i].Tables[j]
			r.Field = fmt.Sprintf("replicas[%d].tables[%d]", i, j)
			r.Lines = map[string]string{}
			for _, key := range []string{"", "table", "where", "columns", "rename", "target", "transform"} {
				f := r.Field
				if key != "" {
					f += "." + key
				}
				if line := lineOf(root, f); line > 0 {
					r.Lines[key] = fmt.Sprintf("%s:%d", c.Path, line)
				}
			}
		}
	}
}
