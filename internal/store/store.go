// Package store opens the database (SQLite by default, PostgreSQL by URL) and
// applies the embedded migrations. SQLite is github.com/ncruces/go-sqlite3:
// SQLite's C source translated to Go, so the binary needs no cgo and no
// system library (the build is CGO_ENABLED=0).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/ncruces/go-sqlite3/gormlite"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/migrations"
)

// Open connects to the configured database. It does not migrate.
func Open(ctx context.Context, cfg config.Database) (*gorm.DB, error) {
	gcfg := &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true, // every write path opens its own transaction
		NowFunc:                func() time.Time { return time.Now().UTC() },
		TranslateError:         true,
	}
	var (
		db  *gorm.DB
		err error
	)
	if cfg.Postgres() {
		var sqlDB *sql.DB
		sqlDB, err = openPostgres(cfg.URL)
		if err == nil {
			if db, err = gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), gcfg); err != nil {
				_ = sqlDB.Close()
			}
		}
	} else {
		if dir := filepath.Dir(cfg.SQLitePath); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("store: create %s: %w", dir, err)
			}
		}
		busy := cfg.BusyTimeout
		if busy <= 0 {
			busy = DefaultBusyTimeout
		}
		db, err = gorm.Open(gormlite.Open(SQLiteDSN(cfg.SQLitePath, busy)), gcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	sqlDB.SetMaxOpenConns(cfg.MaxOpenConns)
	sqlDB.SetMaxIdleConns(cfg.MaxOpenConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("store: ping: %w", err)
	}
	return db, nil
}

// statementCaches is the default size of each connection's two pgx caches
// (prepared statements, and statement descriptions for
// QueryExecModeCacheDescribe), where database.url does not set
// statement_cache_capacity or description_cache_capacity. pgx's 512 makes
// each cache's map for 512 entries when the connection opens: two maps of
// about 25 KB per connection, 1.6 MB of a soak's 16 MB of heap (issue 17).
// The service runs fewer than 40 distinct statements in its busy paths,
// at most 16 on any one connection in a run of every benchmark phase
// (docs/benchmarks.md), so 128 keeps every one cached with room to spare
// while an LRU eviction, were it ever needed, costs one more prepare.
const statementCaches = 128

// openPostgres opens the pool on url, each connection with the array plans
// (RegisterArrays) and caches of statementCaches unless url sizes them.
// The pool is opened here, not by gorm's dialector from the DSN, so that
// the caches can be sized: the dialector would also, for a URL with
// timezone=, replace this AfterConnect with its own, and the arrays would
// take pgx's own plans (the same bytes with more copying). pgx still sends
// timezone= as the session's setting.
func openPostgres(url string) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(url, "statement_cache_capacity") {
		pc.StatementCacheCapacity = statementCaches
	}
	if !strings.Contains(url, "description_cache_capacity") {
		pc.DescriptionCacheCapacity = statementCaches
	}
	return stdlib.OpenDB(*pc, stdlib.OptionAfterConnect(func(_ context.Context, c *pgx.Conn) error {
		RegisterArrays(c.TypeMap())
		return nil
	})), nil
}

// DefaultBusyTimeout is database.busyTimeout's default.
const DefaultBusyTimeout = 5 * time.Second

// SQLiteDSN is the DSN the service uses for a SQLite file: WAL so readers do
// not block the writer, a bounded busy timeout instead of immediate
// SQLITE_BUSY (past it the BUSY error is an outage: IsUnavailable), foreign
// keys on, and BEGIN IMMEDIATE so a read-then-write transaction never fails
// on lock upgrade.
func SQLiteDSN(path string, busy time.Duration) string {
	return fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(wal)&_pragma=foreign_keys(1)&_pragma=synchronous(normal)&_txlock=immediate",
		path, max(busy.Milliseconds(), 1))
}

// IsPostgres reports whether db talks to PostgreSQL. Queries that need row
// claiming (FOR UPDATE SKIP LOCKED) use it to choose their SQL.
func IsPostgres(db *gorm.DB) bool { return db.Dialector.Name() == "postgres" }

func provider(db *gorm.DB) (*goose.Provider, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	dialect, dir := goose.DialectSQLite3, "sqlite"
	var opts []goose.ProviderOption
	if IsPostgres(db) {
		dialect, dir = goose.DialectPostgres, "postgres"
		// Up, Down and Status hold the lock; HasPending (readiness) reads without it.
		opts = append(opts, goose.WithSessionLocker(schemaLocker{}))
	}
	sub, err := fs.Sub(migrations.FS, dir)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(dialect, sqlDB, sub, opts...)
}

// Migrate applies every pending migration. On PostgreSQL concurrent callers
// (replicas starting together) take turns on an advisory lock; each applies
// what the ones before it left pending, usually nothing.
func Migrate(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	p, err := provider(db)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate up: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// MigrateDown rolls back the latest applied migration.
func MigrateDown(ctx context.Context, db *gorm.DB) (int64, error) {
	p, err := provider(db)
	if err != nil {
		return 0, fmt.Errorf("store: migrations: %w", err)
	}
	r, err := p.Down(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: migrate down: %w", err)
	}
	return r.Source.Version, nil
}

// MigrationStatus is one migration and whether it is applied.
type MigrationStatus struct {
	Version int64
	File    string
	Applied bool
}

// Status lists every known migration and whether it is applied.
func Status(ctx context.Context, db *gorm.DB) ([]MigrationStatus, error) {
	p, err := provider(db)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationStatus{Version: s.Source.Version, File: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

// ErrPendingMigrations means the schema is behind the binary.
var ErrPendingMigrations = errors.New("store: migrations pending")

// Ready checks that the database answers and every migration is applied.
func Ready(ctx context.Context, db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	p, err := provider(db)
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("store: migration check: %w", err)
	}
	if pending {
		return ErrPendingMigrations
	}
	return nil
}

// Close closes the underlying pool.
func Close(db *gorm.DB) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}
