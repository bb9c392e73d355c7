package store_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/store"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// Every migration rolls back and re-applies cleanly on both dialects, so
// `migrate down` is a real way back and the two directories stay in step.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		require.NoError(t, store.Ready(ctx, db))

		st, err := store.Status(ctx, db)
		require.NoError(t, err)
		require.NotEmpty(t, st)
		for _, s := range st {
			require.True(t, s.Applied, "%s not applied", s.File)
		}

		for range st {
			_, err := store.MigrateDown(ctx, db)
			require.NoError(t, err)
		}
		require.ErrorIs(t, store.Ready(ctx, db), store.ErrPendingMigrations)
		require.False(t, db.Migrator().HasTable("collections"), "down left collections behind")

		require.NoError(t, store.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))))
		require.NoError(t, store.Ready(ctx, db))
	})
}

// Both dialect directories carry the same versions.
func TestDialectsHaveTheSameMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sqlite, _ := testdb.SQLite(t)
	pg, _ := testdb.Postgres(t)
	a, err := store.Status(ctx, sqlite)
	require.NoError(t, err)
	b, err := store.Status(ctx, pg)
	require.NoError(t, err)
	require.Equal(t, len(a), len(b))
	for i := range a {
		require.Equal(t, a[i].Version, b[i].Version)
		require.Equal(t, a[i].File, b[i].File)
	}
}
