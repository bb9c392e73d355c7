package store_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/gormlite"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// The classifier decides by the error's class: every way a database can be
// down, full, shutting down or busy is unavailability; an error a statement
// or its input caused is not. The errors are the drivers' own values, most
// of them produced for real.
// errorCase is an error (made by err, often a real one from a real
// database) and what the predicate under test should say of it.
type errorCase struct {
	name string
	err  func(t *testing.T) error
	want bool
}

// checkErrorCases runs each case as a subtest: a case that wants true must
// make a real error, and pred must answer want.
func checkErrorCases(t *testing.T, cases []errorCase, pred func(error) bool) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if tc.want {
				require.Error(t, err)
			}
			require.Equal(t, tc.want, pred(err), "%T: %v", err, err)
		})
	}
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	pg, pgURL := testdb.Postgres(t)
	lite, litePath := testdb.SQLite(t)
	ctx := context.Background()

	cases := []errorCase{
		// PostgreSQL, by SQLSTATE class.
		{"pg 53100 disk full", pgErr("53100"), true},
		{"pg 53200 out of memory", pgErr("53200"), true},
		{"pg 53300 too many connections", pgErr("53300"), true},
		{"pg 57P01 admin shutdown", pgErr("57P01"), true},
		{"pg 57P03 cannot connect now", pgErr("57P03"), true},
		{"pg 08006 connection failure", pgErr("08006"), true},
		{"pg 08001 cannot connect", pgErr("08001"), true},
		{"pg 58030 io error", pgErr("58030"), true},
		{"pg 23505 unique violation", pgErr("23505"), false},
		{"pg 22P05 untranslatable character", pgErr("22P05"), false},
		{"pg 57014 statement timeout", pgErr("57014"), false},
		{"pg 40001 serialization failure", pgErr("40001"), false},
		{"pg read-only transaction (real)", func(t *testing.T) error {
			return pg.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("SET TRANSACTION READ ONLY").Error; err != nil {
					return err
				}
				return tx.Exec("INSERT INTO collections (name, status, created_time, updated_time) VALUES ('ro', 'ACTIVE', 0, 0)").Error
			})
		}, true},
		{"pg terminated backend (real)", func(t *testing.T) error {
			// A connection of its own, terminated by another: the next
			// statement on it fails with 57P01 or a closed connection.
			db, err := store.Open(ctx, config.Database{URL: pgURL, MaxOpenConns: 1})
			require.NoError(t, err)
			defer func() { _ = store.Close(db) }()
			var pid int
			require.NoError(t, db.Raw("SELECT pg_backend_pid()").Scan(&pid).Error)
			require.NoError(t, pg.Exec("SELECT pg_terminate_backend(?)", pid).Error)
			return db.Exec("SELECT 1").Error
		}, true},
		{"pg conn closed (real)", func(t *testing.T) error {
			// pgx's own error for a statement on a connection it has
			// closed; the REST intake met it wrapped during an outage.
			conn, err := pgconn.Connect(ctx, pgURL)
			require.NoError(t, err)
			require.NoError(t, conn.Close(ctx))
			_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
			return fmt.Errorf("dispatch: intake: %w", err)
		}, true},
		{"pg connection refused (real)", func(t *testing.T) error {
			_, err := store.Open(ctx, config.Database{URL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", MaxOpenConns: 1})
			return err
		}, true},
		{"pg syntax error (real)", func(t *testing.T) error { return pg.Exec("SELEC 1").Error }, false},
		{"pg duplicate key (real)", func(t *testing.T) error {
			q := "INSERT INTO collections (name, status, created_time, updated_time) VALUES ('dup', 'ACTIVE', 0, 0)"
			require.NoError(t, pg.Exec(q).Error)
			return pg.Exec(q).Error
		}, false},

		// SQLite, by result code.
		{"sqlite busy (real)", func(t *testing.T) error { return sqliteBusy(t, lite, litePath) }, true},
		{"sqlite read-only (real)", func(t *testing.T) error {
			ro, err := gorm.Open(gormlite.Open("file:"+litePath+"?mode=ro"), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			defer func() { _ = store.Close(ro) }()
			return ro.Exec("INSERT INTO collections (name, status, created_time, updated_time) VALUES ('ro', 'ACTIVE', 0, 0)").Error
		}, true},
		{"sqlite cannot open (real)", func(t *testing.T) error {
			_, err := store.Open(ctx, config.Database{SQLitePath: filepath.Join(t.TempDir(), "missing", "x.db") + "/", MaxOpenConns: 1})
			return err
		}, true},
		{"sqlite full", func(t *testing.T) error { return fmt.Errorf("commit: %w", sqlite3.FULL) }, true},
		{"sqlite ioerr", func(t *testing.T) error { return sqlite3.IOERR_WRITE }, true},
		{"sqlite syntax error (real)", func(t *testing.T) error { return lite.Exec("SELEC 1").Error }, false},
		{"sqlite constraint (real)", func(t *testing.T) error {
			return lite.Exec("INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (999999, 'x', 'ACTIVE', 0, 0)").Error
		}, false},

		// Driver and network level.
		{"bad connection", func(*testing.T) error { return fmt.Errorf("exec: %w", driver.ErrBadConn) }, true},
		{"unexpected EOF", func(*testing.T) error { return fmt.Errorf("read: %w", io.ErrUnexpectedEOF) }, true},
		{"canceled by the caller", func(*testing.T) error { return context.Canceled }, false},
		{"record not found", func(*testing.T) error { return gorm.ErrRecordNotFound }, false},
		{"plain error", func(*testing.T) error { return errors.New("something else") }, false},
		{"nil", func(*testing.T) error { return nil }, false},
	}
	checkErrorCases(t, cases, store.IsUnavailable)
}

// A write's error says whether it may have committed: certain when the
// server refused the statement, no connection opened or nothing was sent;
// in doubt when the session broke or the wait ended after the statement
// went out. Most errors are produced for real.
func TestMaybeCommitted(t *testing.T) {
	t.Parallel()
	pg, pgURL := testdb.Postgres(t)
	lite, _ := testdb.SQLite(t)
	ctx := context.Background()
	// own opens a pool of one connection, so its backend can be named.
	own := func(t *testing.T) (*gorm.DB, int) {
		db, err := store.Open(ctx, config.Database{URL: pgURL, MaxOpenConns: 1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close(db) })
		var pid int
		require.NoError(t, db.Raw("SELECT pg_backend_pid()").Scan(&pid).Error)
		return db, pid
	}
	cases := []errorCase{
		{"pg duplicate key (real)", func(t *testing.T) error {
			q := "INSERT INTO collections (name, status, created_time, updated_time) VALUES ('maybe-dup', 'ACTIVE', 0, 0)"
			require.NoError(t, pg.Exec(q).Error)
			return pg.Exec(q).Error
		}, false},
		{"pg unavailable ERROR", pgErr("53100"), false},
		{"pg connection refused (real)", func(t *testing.T) error {
			_, err := store.Open(ctx, config.Database{URL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", MaxOpenConns: 1})
			return err
		}, false},
		{"pg conn closed before sending (real)", func(t *testing.T) error {
			conn, err := pgconn.Connect(ctx, pgURL)
			require.NoError(t, err)
			require.NoError(t, conn.Close(ctx))
			_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
			return err
		}, false},
		{"pg session terminated mid-statement (real)", func(t *testing.T) error {
			db, pid := own(t)
			go func() {
				time.Sleep(200 * time.Millisecond) // the statement below is under way
				_ = pg.Exec("SELECT pg_terminate_backend(?)", pid).Error
			}()
			return db.Exec("SELECT pg_sleep(30)").Error
		}, true},
		{"pg context ended mid-statement (real)", func(t *testing.T) error {
			db, _ := own(t)
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			return db.WithContext(cctx).Exec("SELECT pg_sleep(30)").Error
		}, true},
		{"connection broke mid-answer", func(*testing.T) error { return fmt.Errorf("read: %w", io.ErrUnexpectedEOF) }, true},
		{"bad connection (database/sql: not sent)", func(*testing.T) error { return fmt.Errorf("exec: %w", driver.ErrBadConn) }, false},
		{"no connection before the context ended", func(*testing.T) error { return context.DeadlineExceeded }, false},
		{"sqlite constraint (real)", func(t *testing.T) error {
			return lite.Exec("INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (999999, 'x', 'ACTIVE', 0, 0)").Error
		}, false},
		{"nil", func(*testing.T) error { return nil }, false},
	}
	checkErrorCases(t, cases, store.MaybeCommitted)
}

func pgErr(code string) func(*testing.T) error {
	return func(*testing.T) error {
		return fmt.Errorf("dispatch: intake: %w", &pgconn.PgError{Severity: "ERROR", Code: code, Message: "injected"})
	}
}

// sqliteBusy makes a real SQLITE_BUSY: one connection holds the write lock
// while another, with a 1 ms busy_timeout, tries to write.
func sqliteBusy(t *testing.T, holder *gorm.DB, path string) error {
	t.Helper()
	other, err := store.Open(context.Background(), config.Database{SQLitePath: path, MaxOpenConns: 1, BusyTimeout: time.Millisecond})
	require.NoError(t, err)
	defer func() { _ = store.Close(other) }()
	tx := holder.Begin() // BEGIN IMMEDIATE: takes the write lock
	require.NoError(t, tx.Error)
	defer tx.Rollback()
	return other.Exec("INSERT INTO collections (name, status, created_time, updated_time) VALUES ('busy', 'ACTIVE', 0, 0)").Error
}

// The outage tracker reports an unavailability error until a write
// succeeds, ignores other errors, and forgets after its hold.
func TestOutage(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	o := store.NewOutage(10*time.Second, func() time.Time { return now })
	ctx := context.Background()
	require.NoError(t, o.Check(ctx))

	require.False(t, o.Observe(errors.New("bad statement")))
	require.NoError(t, o.Check(ctx))

	full := &pgconn.PgError{Code: "53100", Message: "could not extend file"}
	require.True(t, o.Observe(fmt.Errorf("commit: %w", full)))
	require.ErrorIs(t, o.Check(ctx), full)
	o.Recovered()
	require.NoError(t, o.Check(ctx))

	o.Observe(full)
	now = now.Add(11 * time.Second)
	require.NoError(t, o.Check(ctx), "forgotten after the hold")
}

// As a gorm plugin the tracker sees statement errors and clears on the next
// successful write.
func TestOutagePlugin(t *testing.T) {
	t.Parallel()
	db, _ := testdb.SQLite(t)
	o := store.NewOutage(time.Minute, nil)
	require.NoError(t, db.Use(o))
	ctx := context.Background()
	full := &pgconn.PgError{Code: "53100", Message: "could not extend file"}
	inject := true
	require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:inject", func(tx *gorm.DB) {
		if inject {
			_ = tx.AddError(full)
		}
	}))
	require.Error(t, db.Exec("UPDATE collections SET name = name").Error)
	require.ErrorIs(t, o.Check(ctx), full)
	inject = false
	require.NoError(t, db.Exec("UPDATE collections SET name = name").Error)
	require.NoError(t, o.Check(ctx))
}
