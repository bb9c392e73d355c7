package collections_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// A collection's zone defaults to UTC and its quiet hours to none; both are
// stored, returned, carried by the envelopes, and a PATCH sets or (null)
// clears the window.
func TestCollectionTimezoneAndQuietHours(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		plain := b.collection(t, "Plain")
		require.Equal(t, "UTC", plain.Timezone)
		require.Nil(t, plain.QuietHours)

		night := &schedule.Window{Start: "21:00", End: "08:00"}
		col, err := b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{
			Name: "Shop", Timezone: "Europe/Paris", QuietHours: night,
		})
		require.NoError(t, err)
		got, err := b.svc.GetCollection(ctx, b.admin, col.ID)
		require.NoError(t, err)
		require.Equal(t, col, got)
		require.Equal(t, "Europe/Paris", got.Timezone)
		require.Equal(t, night, got.QuietHours)

		var patch collections.CollectionPatch
		require.NoError(t, json.Unmarshal([]byte(`{"timezone":"America/New_York","quietHours":{"start":"22:00","end":"07:30"}}`), &patch))
		up, err := b.svc.UpdateCollection(ctx, b.admin, col.ID, patch, 0)
		require.NoError(t, err)
		require.Equal(t, "America/New_York", up.Timezone)
		require.Equal(t, &schedule.Window{Start: "22:00", End: "07:30"}, up.QuietHours)

		// Absent leaves the window alone; null clears it.
		up, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, collections.CollectionPatch{Name: str("Shop 2")}, 0)
		require.NoError(t, err)
		require.NotNil(t, up.QuietHours)
		patch = collections.CollectionPatch{}
		require.NoError(t, json.Unmarshal([]byte(`{"quietHours":null}`), &patch))
		up, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, patch, 0)
		require.NoError(t, err)
		require.Nil(t, up.QuietHours)
		got, err = b.svc.GetCollection(ctx, b.admin, col.ID)
		require.NoError(t, err)
		require.Equal(t, up, got)

		envs := b.outbox(t)
		var p struct{ Collection map[string]any }
		require.NoError(t, json.Unmarshal(envs[1].Detail.Payload, &p))
		require.Equal(t, "Europe/Paris", p.Collection["timezone"])
		require.Equal(t, map[string]any{"start": "21:00", "end": "08:00"}, p.Collection["quietHours"])
	})
}

func TestCollectionTimezoneValidation(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		ctx := context.Background()
		col := b.collection(t, "Shop")
		for _, tc := range []struct {
			name string
			zone string
			w    *schedule.Window
			want map[string]string
		}{
			{"unknown zone", "Mars/Olympus", nil, map[string]string{"timezone": "must be an IANA time zone such as Europe/Paris or UTC"}},
			{"the machine's zone", "Local", nil, map[string]string{"timezone": "must be an IANA time zone such as Europe/Paris or UTC"}},
			{"bad start", "", &schedule.Window{Start: "9pm", End: "08:00"}, map[string]string{"quietHours.start": "must be a time of day HH:MM (00:00 to 23:59)"}},
			{"empty window", "", &schedule.Window{Start: "08:00", End: "08:00"}, map[string]string{"quietHours.end": "must differ from start (a window from a time to itself is empty or the whole day)"}},
		} {
			_, err := b.svc.CreateCollection(ctx, b.admin, collections.CollectionInput{Name: "X", Timezone: tc.zone, QuietHours: tc.w})
			require.Equal(t, tc.want, fields(requireKind(t, err, apperr.InvalidArgument)), tc.name)
			patch := collections.CollectionPatch{QuietHours: schedule.Optional{Set: tc.w != nil, Window: tc.w}}
			if tc.zone != "" {
				patch.Timezone = &tc.zone
			}
			_, err = b.svc.UpdateCollection(ctx, b.admin, col.ID, patch, 0)
			require.Equal(t, tc.want, fields(requireKind(t, err, apperr.InvalidArgument)), tc.name)
		}
	})
}
