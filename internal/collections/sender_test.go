package collections_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

func str(s string) *string { return &s }

// The default sender is stored, returned, carried by the envelopes, and a
// PATCH may change either half as long as a name never stands without an
// address, judged on the merged row.
func TestCollectionDefaultSender(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col, err := b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{
			Name: "Shop", DefaultFromEmail: "shop@example.com", DefaultFromName: "Shop",
		})
		require.NoError(t, err)
		require.Equal(t, "shop@example.com", col.DefaultFromEmail)
		require.Equal(t, "Shop", col.DefaultFromName)
		got, err := b.svc.GetCollection(ctx, b.admin, col.ID)
		require.NoError(t, err)
		require.Equal(t, col, got)

		// A name alone is fine over a stored address.
		up, err := b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{DefaultFromName: str("The Shop")}, 0)
		require.NoError(t, err)
		require.Equal(t, "shop@example.com", up.DefaultFromEmail)
		require.Equal(t, "The Shop", up.DefaultFromName)

		// Clearing the address under a name is refused, and nothing changes.
		_, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{DefaultFromEmail: str("")}, 0)
		e := requireKind(t, err, apperr.InvalidArgument)
		require.Equal(t, map[string]string{"defaultFromEmail": "is required when defaultFromName is set"}, fields(e))
		got, err = b.svc.GetCollection(ctx, b.admin, col.ID)
		require.NoError(t, err)
		require.Equal(t, up, got, "the refused patch was rolled back")

		// Both cleared: no default.
		cleared, err := b.svc.UpdateCollection(ctx, b.admin, col.ID,
			collections.CollectionPatch{DefaultFromEmail: str(""), DefaultFromName: str("")}, up.Version)
		require.NoError(t, err)
		require.Empty(t, cleared.DefaultFromEmail)
		require.Empty(t, cleared.DefaultFromName)

		envs := b.outbox(t)
		require.Len(t, envs, 3, "create and two updates; the refused patch wrote none")
		senders := make([][2]string, len(envs))
		for i, env := range envs {
			var p struct{ Collection collections.Collection }
			require.NoError(t, json.Unmarshal(env.Detail.Payload, &p))
			senders[i] = [2]string{p.Collection.DefaultFromEmail, p.Collection.DefaultFromName}
		}
		require.Equal(t, outbox.CollectionCreate, envs[0].DetailType)
		require.Equal(t, [][2]string{{"shop@example.com", "Shop"}, {"shop@example.com", "The Shop"}, {"", ""}}, senders)
	})
}

func TestCollectionDefaultSenderValidation(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		before := len(b.outbox(t))
		long := strings.Repeat("n", collections.MaxFromNameLen+1)
		for _, tc := range []struct {
			name, email, from string
			want              map[string]string
		}{
			{"not an address", "shop", "", map[string]string{"defaultFromEmail": "must be an email address such as noreply@example.com"}},
			{"address with a display name", "Shop <shop@example.com>", "", map[string]string{"defaultFromEmail": "must be an email address such as noreply@example.com"}},
			{"name without address", "", "Shop", map[string]string{"defaultFromEmail": "is required when defaultFromName is set"}},
			{"long name", "shop@example.com", long, map[string]string{"defaultFromName": "must be at most 256 characters"}},
		} {
			_, err := b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{
				Name: "X", DefaultFromEmail: tc.email, DefaultFromName: tc.from,
			})
			require.Equal(t, tc.want, fields(requireKind(t, err, apperr.InvalidArgument)), tc.name)

			patch := collections.CollectionPatch{DefaultFromEmail: &tc.email, DefaultFromName: &tc.from}
			_, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, patch, 0)
			require.Equal(t, tc.want, fields(requireKind(t, err, apperr.InvalidArgument)), tc.name)
		}
		_, err := b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{}, 0)
		require.Contains(t, fields(requireKind(t, err, apperr.InvalidArgument))["body"], "defaultFromEmail")
		require.Len(t, b.outbox(t), before, "no refused change wrote an envelope")
	})
}
