package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Node is one database of a multi-master set: it captures its own writes
// and applies every other node's.
type Node struct {
	Name string `yaml:"name"` // unique within the set, same rules as the set name
	DSN  string `yaml:"dsn"`  // libpq key/value string or postgres:// URL
}

// MultiMaster reports whether the set is a multi-master set (nodes:).
func (c *Config) MultiMaster() bool { return len(c.Nodes) > 0 }

// DirectionSeparator joins a set's name and a source node's name into the
// name of that node's stream (DirectionSet), and a direction's two nodes
// in its label (DirectionLabel).
const DirectionSeparator = "__"

// DirectionSet is the name under which the changes of node source travel:
// the set name of the one-way stream from it (positions, apply lock and
// origin tag on every other node).
func DirectionSet(set, source string) string { return set + DirectionSeparator + source }

// DirectionLabel names one direction, node from applied to node to, in
// status and the engine's events: "a->b".
func DirectionLabel(from, to string) string { return from + "->" + to }

// Directions are the one-way sets a multi-master set is made of: one per
// source node, whose origin is that node and whose replicas are the other
// nodes (or only node into, when into is not empty: a daemon that applies
// into one node). Every direction of a set of N nodes is one origin to
// replica stream: N×(N−1) in all. Source is set on each; the set's own
// Nodes are not. A one-way set is its own only direction.
func (c *Config) Directions(into string) []*Config {
	if !c.MultiMaster() {
		return []*Config{c}
	}
	var out []*Config
	for _, src := range c.Nodes {
		d := *c
		d.Conflicts.Priority = c.Ranks()
		d.Nodes = nil
		d.Name = DirectionSet(c.Name, src.Name)
		d.Source = src.Name
		d.Origin = Endpoint{DSN: src.DSN}
		d.Replicas = nil
		for _, n := range c.Nodes {
			if n.Name != src.Name && (into == "" || n.Name == into) {
				d.Replicas = append(d.Replicas, Replica{Name: n.Name, DSN: n.DSN})
			}
		}
		if len(d.Replicas) > 0 {
			out = append(out, &d)
		}
	}
	return out
}

// Pairs are the one-way sets from each node to each later node in the
// list, one replica each: every pair of nodes once (verify).
func (c *Config) Pairs() []*Config {
	var out []*Config
	for i, a := range c.Nodes {
		for _, b := range c.Nodes[i+1:] {
			d := *c
			d.Conflicts.Priority = c.Ranks()
			d.Nodes = nil
			d.Name = DirectionSet(c.Name, a.Name)
			d.Source = a.Name
			d.Origin = Endpoint{DSN: a.DSN}
			d.Replicas = []Replica{{Name: b.Name, DSN: b.DSN}}
			out = append(out, &d)
		}
	}
	return out
}

// Node returns the node called name.
func (c *Config) Node(name string) (Node, error) {
	var names []string
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
		names = append(names, n.Name)
	}
	if len(names) == 0 {
		return Node{}, fmt.Errorf("unknown node %q: the set has no nodes: (not a multi-master set)", name)
	}
	return Node{}, fmt.Errorf("unknown node %q (known: %s)", name, strings.Join(names, ", "))
}

func (c *Config) nodeProblems(add func(field, format string, args ...any)) {
	if strings.TrimSpace(c.Origin.DSN) != "" || len(c.Replicas) > 0 {
		add("nodes", "a multi-master set lists nodes: instead of origin: and replicas:; keep one of the two shapes")
	}
	if len(c.Nodes) < 2 {
		add("nodes", "a multi-master set needs at least 2 nodes (got %d)", len(c.Nodes))
	}
	names, dsns := map[string]int{}, map[string]int{}
	for i, n := range c.Nodes {
		field := fmt.Sprintf("nodes[%d]", i)
		switch first, seen := names[n.Name]; {
		case n.Name == "":
			add(field+".name", "missing")
		case !validName(n.Name):
			add(field+".name", nameRule+" (got %q)", n.Name)
		case strings.Contains(n.Name, DirectionSeparator):
			add(field+".name", "must not contain %q, which joins set and node names (got %q)", DirectionSeparator, n.Name)
		case seen:
			add(field+".name", "duplicate, already used by nodes[%d] (got %q)", first, n.Name)
		default:
			names[n.Name] = i
		}
		if msg := dsnProblem(n.DSN); msg != "" {
			add(field+".dsn", "%s", msg)
		} else if first, seen := dsns[n.DSN]; seen {
			add(field+".dsn", "same database as nodes[%d]: a node is listed twice", first)
		} else {
			dsns[n.DSN] = i
		}
		if len(DirectionSet(c.Name, n.Name)) > 63 {
			add(field+".name", "set name, %q and node name together must be at most 63 characters (got %d)", DirectionSeparator, len(DirectionSet(c.Name, n.Name)))
		}
	}
}

// Conflicts is how a multi-master set resolves concurrent changes of a row.
type Conflicts struct {
	// Policy is the set's: latest (the newest write wins by the row's
	// clock; ties by Priority), priority (among concurrent writes, the node
	// earlier in Priority wins), or error (the direction stops there,
	// its position unchanged, until the operator resolves the row).
	Policy string `yaml:"policy"`
	// Priority orders the nodes for ties and for the priority policy;
	// default: the order of nodes:.
	Priority []string `yaml:"priority"`
	// Tables override the policy per table ("schema.table": policy).
	Tables map[string]string `yaml:"tables"`
	// Kinds override the policy per conflict kind (Kinds below: policy),
	// in every table: a kind's override wins over the table's policy,
	// which wins over the set's. update_missing and delete_origin_differs
	// must resolve alike (see kindPairs).
	Kinds map[string]string `yaml:"kinds"`
	// DetectDrift ("schema.table", also on a one-way set): an UPDATE of
	// these tables carries the old values of the changed columns; a
	// replica whose row had other values there (a local write) records
	// the change as an update_origin_differs conflict (and applies it).
	// Multi-master tables always carry them.
	DetectDrift []string `yaml:"detect_drift"`
	// Retention is how long each node keeps its conflict ledger's
	// entries (removed with the log's purge); 0 is DefaultRetention.
	Retention time.Duration `yaml:"retention"`
}

// DefaultRetention is how long a conflict stays in the ledger.
const DefaultRetention = 30 * 24 * time.Hour

// Kept is how long the ledger keeps a conflict.
func (c Conflicts) Kept() time.Duration {
	if c.Retention == 0 {
		return DefaultRetention
	}
	return c.Retention
}

// The conflict policies.
const (
	PolicyLatest   = "latest"
	PolicyPriority = "priority"
	PolicyError    = "error"
)

// The conflict kinds, as PostgreSQL 18 names them.
const (
	KindInsertExists        = "insert_exists"
	KindUpdateMissing       = "update_missing"
	KindUpdateOriginDiffers = "update_origin_differs"
	KindDeleteMissing       = "delete_missing"
	KindDeleteOriginDiffers = "delete_origin_differs"
)

// ConflictKinds are the conflict kinds, in the order the README lists them.
func ConflictKinds() []string {
	return []string{KindInsertExists, KindUpdateOriginDiffers, KindUpdateMissing, KindDeleteOriginDiffers, KindDeleteMissing}
}

// kindPairs are the kinds that the two nodes of one pair of concurrent
// changes meet, each its own: of a concurrent UPDATE and DELETE of a row,
// the node that updated receives the delete as delete_origin_differs and
// the node that deleted receives the update as update_missing. The two
// must resolve by the same policy, or each node keeps a different row.
// (insert_exists and update_origin_differs are met as themselves on both
// nodes; delete_missing needs a row without a version, which concurrent
// changes do not make.)
func kindPairs() [][2]string { return [][2]string{{KindUpdateMissing, KindDeleteOriginDiffers}} }

// DefaultPolicy is the conflict policy of a set that names none.
const DefaultPolicy = PolicyLatest

// PolicyFor is the conflict policy of a table ("schema.table", as
// pg.Table.String prints it).
func (c *Config) PolicyFor(table string) string {
	if p, ok := c.Conflicts.Tables[table]; ok {
		return p
	}
	if c.Conflicts.Policy == "" {
		return DefaultPolicy
	}
	return c.Conflicts.Policy
}

// PolicyForKind is the conflict policy of a kind of conflict in a table:
// the kind's override (conflicts.kinds), else the table's policy.
func (c *Config) PolicyForKind(table, kind string) string {
	if p, ok := c.Conflicts.Kinds[kind]; ok {
		return p
	}
	return c.PolicyFor(table)
}

// Ranks is the node priority list: Conflicts.Priority, else the nodes in order.
func (c *Config) Ranks() []string {
	if len(c.Conflicts.Priority) > 0 {
		return c.Conflicts.Priority
	}
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	return out
}

func policyProblem(p string) string {
	switch p {
	case PolicyLatest, PolicyPriority, PolicyError:
		return ""
	case "keep_local", "apply_remote", "skip":
		return fmt.Sprintf("%s does not converge: each node would keep a different row; use latest, priority or error (got %q)", p, p)
	}
	return fmt.Sprintf("want latest, priority or error (got %q)", p)
}

func (c *Config) conflictProblems(add func(field, format string, args ...any)) {
	if !c.MultiMaster() {
		if c.Conflicts.Policy != "" || len(c.Conflicts.Priority) > 0 || len(c.Conflicts.Tables) > 0 || len(c.Conflicts.Kinds) > 0 {
			add("conflicts", "conflict policies are for a multi-master set (nodes:); a one-way set has only detect_drift and retention")
		}
		return
	}
	if c.Conflicts.Retention < 0 {
		add("conflicts.retention", "must not be negative (got %s)", c.Conflicts.Retention)
	}
	if c.Conflicts.Policy != "" {
		if msg := policyProblem(c.Conflicts.Policy); msg != "" {
			add("conflicts.policy", "%s", msg)
		}
	}
	for t, p := range c.Conflicts.Tables {
		if msg := policyProblem(p); msg != "" {
			add("conflicts.tables", "%s: %s", t, msg)
		}
	}
	c.kindProblems(add)
	if len(c.Conflicts.Priority) > 0 {
		seen := map[string]bool{}
		for i, n := range c.Conflicts.Priority {
			if _, err := c.Node(n); err != nil {
				add(fmt.Sprintf("conflicts.priority[%d]", i), "%v", err)
			}
			if seen[n] {
				add(fmt.Sprintf("conflicts.priority[%d]", i), "listed twice (got %q)", n)
			}
			seen[n] = true
		}
		if len(seen) != len(c.Nodes) {
			add("conflicts.priority", "must list every node once (got %d of %d)", len(c.Conflicts.Priority), len(c.Nodes))
		}
	}
}

// kindProblems checks conflicts.kinds: known kinds, known policies, and
// the kinds of one pair of concurrent changes (kindPairs) resolving alike
// under the set's policy and under every table's.
func (c *Config) kindProblems(add func(field, format string, args ...any)) {
	keys := slices.Sorted(maps.Keys(c.Conflicts.Kinds))
	kinds := ConflictKinds()
	bad := false
	for _, k := range keys {
		if !slices.Contains(kinds, k) {
			add("conflicts.kinds."+k, "unknown conflict kind: want %s (got %q)", strings.Join(kinds, ", "), k)
			bad = true
		} else if msg := policyProblem(c.Conflicts.Kinds[k]); msg != "" {
			add("conflicts.kinds."+k, "%s", msg)
			bad = true
		}
	}
	if bad || len(keys) == 0 {
		return
	}
	scopes := []string{""}
	for _, t := range slices.Sorted(maps.Keys(c.Conflicts.Tables)) {
		if policyProblem(c.Conflicts.Tables[t]) == "" {
			scopes = append(scopes, t)
		}
	}
	for _, pair := range kindPairs() {
		for _, t := range scopes {
			a, b := c.PolicyForKind(t, pair[0]), c.PolicyForKind(t, pair[1])
			if a == b {
				continue
			}
			where := "the set"
			if t != "" {
				where = "table " + t
			}
			add("conflicts.kinds", "%s resolves by %s but %s by %s in %s: of a concurrent UPDATE and DELETE of one row, "+
				"the node that deleted meets the update as %s and the node that updated meets the delete as %s, "+
				"so the two must resolve by the same policy or the nodes keep different rows; give both the same policy",
				pair[0], a, pair[1], b, where, pair[0], pair[1])
			break
		}
	}
}
