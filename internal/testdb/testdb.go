// Package testdb gives tests a migrated database of their own: a fresh
// PostgreSQL schema or a fresh SQLite file, dropped when the test ends.
//
// PostgreSQL comes from NOTIFY_TEST_DATABASE_URL (default: the local server on
// 127.0.0.1:5432, database test). When it is unreachable the test is skipped,
// except under CI=true, where it fails: CI must never pass by skipping.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
)

// DefaultPostgresURL is the local server every developer machine and CI has.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresURL is the server tests use.
func PostgresURL() string {
	if u := os.Getenv("NOTIFY_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// Unavailable skips the test, or fails it under CI=true, because a service it
// needs is missing.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", what, err)
	}
	t.Skipf("%s unavailable: %v", what, err)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Postgres returns a migrated database in a schema of its own. It also returns
// the URL that reaches that schema, for tests that start a whole service.
func Postgres(t testing.TB) (*gorm.DB, string) {
	t.Helper()
	ctx := context.Background()
	u := PostgresSchema(t)
	db, err := store.Open(ctx, config.Database{URL: u, MaxOpenConns: 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close(db) })
	require.NoError(t, store.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))))
	return db, u
}

// PostgresSchema creates an empty schema of its own, dropped when the test
// ends, and returns the URL that reaches it (search_path set), for tests of
// migrating itself.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	base := PostgresURL()
	admin, err := store.Open(ctx, config.Database{URL: base, MaxOpenConns: 2})
	if err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	schema := randomName("t_")
	require.NoError(t, admin.Exec("CREATE SCHEMA "+schema).Error)
	t.Cleanup(func() {
		_ = admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error
		_ = store.Close(admin)
	})

	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLite returns a migrated database in a temporary file, and the file's path.
func SQLite(t testing.TB) (*gorm.DB, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := store.Open(ctx, config.Database{SQLitePath: path, MaxOpenConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close(db) })
	require.NoError(t, store.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))))
	return db, path
}

// Dialects runs fn once against SQLite and once against PostgreSQL, as
// subtests, so one suite covers both databases the service supports.
func Dialects(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			var db *gorm.DB
			if name == "sqlite" {
				db, _ = SQLite(t)
			} else {
				db, _ = Postgres(t)
			}
			fn(t, db)
		})
	}
}

// Name returns a random identifier with prefix, for per-test queue names and
// the like.
func Name(prefix string) string { return randomName(prefix) }

// OutageOn makes db's statements whose SQL contains fragment fail, while
// the returned switch is on (it starts off), with the error PostgreSQL
// gives a session it is ending (57P01: pg_terminate_backend or a
// shutdown): a database outage at that statement. Call it before db runs
// statements concurrently: gorm's callbacks are not to be changed beside
// running statements (InjectError).
func OutageOn(t testing.TB, db *gorm.DB, fragment string) *atomic.Bool {
	t.Helper()
	var on atomic.Bool
	InjectError(t, db, func(stmt *gorm.Statement) error {
		if on.Load() && strings.Contains(stmt.SQL.String(), fragment) {
			return &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}
		}
		return nil
	})
	return &on
}

// InjectError makes every statement db runs through gorm fail with the
// error fault returns for it, for as long as it returns one (nil lets the
// statement through; a raw statement's SQL is already in stmt.SQL). The failing statement goes to a driver that returns the error
// from Exec and Query, so it reaches the caller as a real one would, through
// database/sql (a *sql.Row carries it to Scan). Tests use it to stand in for
// a database that answers pings but cannot work (a full disk, a shutdown)
// with the driver's real error value, such as a *pgconn.PgError with code
// 53100. Transaction begin and commit are not statements and still work.
func InjectError(t testing.TB, db *gorm.DB, fault func(stmt *gorm.Statement) error) {
	t.Helper()
	name := randomName("testdb:inject_")
	conn := &faultConn{}
	faulty := sql.OpenDB(conn)
	t.Cleanup(func() { _ = faulty.Close() })
	inject := func(tx *gorm.DB) {
		if err := fault(tx.Statement); err != nil {
			conn.err.Store(&err)
			tx.Statement.ConnPool = faulty
		}
	}
	cb := db.Callback()
	for _, h := range []struct {
		register func(string, func(*gorm.DB)) error
		remove   func(string) error
	}{
		{cb.Create().Before("gorm:create").Register, cb.Create().Remove},
		{cb.Query().Before("gorm:query").Register, cb.Query().Remove},
		{cb.Update().Before("gorm:update").Register, cb.Update().Remove},
		{cb.Delete().Before("gorm:delete").Register, cb.Delete().Remove},
		{cb.Row().Before("gorm:row").Register, cb.Row().Remove},
		{cb.Raw().Before("gorm:raw").Register, cb.Raw().Remove},
	} {
		require.NoError(t, h.register(name, inject))
		t.Cleanup(func() { _ = h.remove(name) })
	}
}

// faultConn is a database/sql driver connection (and its own connector)
// whose every statement fails with the stored error.
type faultConn struct{ err atomic.Pointer[error] }

func (c *faultConn) fail() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return errors.New("testdb: injected fault")
}

func (c *faultConn) Connect(context.Context) (driver.Conn, error) { return c, nil }
func (c *faultConn) Driver() driver.Driver                        { return faultDriver{c} }
func (c *faultConn) Prepare(string) (driver.Stmt, error)          { return nil, c.fail() }
func (c *faultConn) Close() error                                 { return nil }
func (c *faultConn) Begin() (driver.Tx, error)                    { return nil, c.fail() }
func (c *faultConn) CheckNamedValue(*driver.NamedValue) error     { return nil }
func (c *faultConn) ExecContext(context.Context, string, []driver.NamedValue) (driver.Result, error) {
	return nil, c.fail()
}
func (c *faultConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return nil, c.fail()
}

type faultDriver struct{ c *faultConn }

func (d faultDriver) Open(string) (driver.Conn, error) { return d.c, nil }

// Plan returns the query plan of q with args on db, one line per row the
// dialect's EXPLAIN gives (PostgreSQL's EXPLAIN, SQLite's EXPLAIN QUERY
// PLAN): what tests that a statement reads the index meant for it check.
func Plan(t testing.TB, db *gorm.DB, q string, args ...any) string {
	t.Helper()
	prefix := "EXPLAIN QUERY PLAN "
	if store.IsPostgres(db) {
		prefix = "EXPLAIN "
	}
	rows, err := db.Raw(prefix+q, args...).Rows()
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		for _, v := range vals {
			if s, ok := v.(string); ok {
				plan = append(plan, s)
			}
		}
	}
	require.NoError(t, rows.Err())
	return strings.Join(plan, "\n")
}
