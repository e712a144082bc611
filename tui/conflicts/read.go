package conflicts

import "pgreplica/core/conflict"

// Conflict is one row of pgreplica.conflict on a replica (core reads them:
// conflict.List, conflict.CurrentRow).
type Conflict = conflict.Conflict

// Limit is how many conflicts are read per replica (newest first).
const Limit = conflict.Limit
