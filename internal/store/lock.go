package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pressly/goose/v3/lock"
)

// migrationLockClass is the first key of the advisory lock that serialises
// migrations ("nsmg"); the second is the hash of the schema being migrated.
const migrationLockClass int32 = 0x6e736d67

// schemaLocker serialises goose runs on PostgreSQL with a session-level
// advisory lock, so replicas that all run `migrate up` at start-up take turns
// instead of racing to create the same tables. The lock is keyed by the
// current schema as well as the database (advisory locks are per database):
// the schema is where goose_db_version and the tables live, so two services
// in different schemas of one database (the tests do this) need not wait for
// each other, while replicas of one service always do.
//
// It waits with a blocking pg_advisory_lock rather than goose's polling
// locker, so the next replica starts the moment the first one finishes; the
// caller's context bounds the wait.
type schemaLocker struct{}

var _ lock.SessionLocker = schemaLocker{}

const schemaKey = `hashtext(coalesce(current_schema(), ''))`

func (schemaLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, `+schemaKey+`)`, migrationLockClass); err != nil {
		return fmt.Errorf("store: wait for the migration lock: %w", err)
	}
	return nil
}

func (schemaLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var released bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1, `+schemaKey+`)`, migrationLockClass).Scan(&released); err != nil {
		return fmt.Errorf("store: release the migration lock: %w", err)
	}
	if !released {
		return fmt.Errorf("store: release the migration lock: it was not held")
	}
	return nil
}
