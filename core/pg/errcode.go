package pg

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Code is the SQLSTATE of the PostgreSQL error in err's chain, "" when
// there is none. The *pgconn.PgError stays in the chain: callers wrap, they
// do not replace.
func Code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsUndefinedTable reports a missing table (42P01) or schema (3F000): for
// pgreplica's own tables, the sign that it is not installed there.
func IsUndefinedTable(err error) bool {
	c := Code(err)
	return c == pgerrcode.UndefinedTable || c == pgerrcode.InvalidSchemaName
}

// IsLockBusy reports a deadlock (40P01) or a lock that was not available
// (55P03): a statement that a retry a moment later can cure.
func IsLockBusy(err error) bool {
	c := Code(err)
	return c == pgerrcode.DeadlockDetected || c == pgerrcode.LockNotAvailable
}

// IsLockNotAvailable reports 55P03 (NOWAIT or lock_timeout).
func IsLockNotAvailable(err error) bool { return Code(err) == pgerrcode.LockNotAvailable }

// IsUniqueViolation reports 23505.
func IsUniqueViolation(err error) bool { return Code(err) == pgerrcode.UniqueViolation }

// IsTransient reports the errors a retry cures: a lost or refused
// connection (class 08), an administrator's shutdown (57P01), a
// serialization failure, a deadlock or a busy lock.
func IsTransient(err error) bool {
	c := Code(err)
	return pgerrcode.IsConnectionException(c) || c == pgerrcode.AdminShutdown ||
		c == pgerrcode.SerializationFailure || IsLockBusy(err)
}

// ErrServerTooOld is in the chain of a connect error for a server older
// than MinVersion.
var ErrServerTooOld = errors.New("server older than PostgreSQL 13")

type tooOldError struct{ msg string }

func (e *tooOldError) Error() string        { return e.msg }
func (e *tooOldError) Is(target error) bool { return target == ErrServerTooOld }

// IsServerTooOld reports a server pgreplica does not support.
func IsServerTooOld(err error) bool { return errors.Is(err, ErrServerTooOld) }
