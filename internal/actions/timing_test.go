package actions_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// config.quietHours keeps absent, null and a window apart through JSON and
// the database; urgent and throttle round-trip; ForSend fills an absent
// window (and the zone) from the collection, leaves null off and an
// action's own window alone.
func TestTimingConfig(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		require.NoError(t, db.Exec(`UPDATE collections SET timezone = 'Europe/Paris', quiet_hours = '{"start":"21:00","end":"08:00"}' WHERE id = ?`, b.coll).Error)
		decode := func(doc string) actions.Input {
			in := sms(b.event, "")
			var c actions.Config
			require.NoError(t, json.Unmarshal([]byte(doc), &c))
			in.Config = c
			return in
		}
		absent := decode(`{"body": "Hi"}`)
		absent.Name = "absent"
		null := decode(`{"body": "Hi", "quietHours": null, "urgent": true}`)
		null.Name = "null"
		own := decode(`{"body": "Hi", "quietHours": {"start": "22:00", "end": "07:00"}, "throttle": {"limit": 3, "window": "1h", "key": "recipient+event"}}`)
		own.Name = "own"
		var refs []actions.Ref
		for _, in := range []actions.Input{absent, null, own} {
			a := b.create(t, in)
			got, err := b.svc.Get(b.ctx, b.admin, b.coll, a.ID)
			require.NoError(t, err)
			require.Equal(t, in.Config, got.Config, in.Name)
			refs = append(refs, actions.Ref{CollectionID: b.coll, ID: a.ID})
		}
		wire := func(c actions.Config) string { out, _ := json.Marshal(c); return string(out) }
		require.NotContains(t, wire(absent.Config), "quietHours")
		require.Contains(t, wire(null.Config), `"quietHours":null,"urgent":true`)
		require.Contains(t, wire(own.Config), `"quietHours":{"start":"22:00","end":"07:00"},"throttle":{"limit":3,"window":"1h","key":"recipient+event"}`)

		sent, err := actions.NewRules(db).ForSend(b.ctx, refs)
		require.NoError(t, err)
		require.Len(t, sent, 3)
		byName := map[string]actions.Action{}
		for _, a := range sent {
			byName[a.Name] = a
			require.Equal(t, "Europe/Paris", a.Timezone)
		}
		require.Equal(t, &schedule.Window{Start: "21:00", End: "08:00"}, byName["absent"].Config.QuietHours.Window, "the collection's")
		require.Nil(t, byName["null"].Config.QuietHours.Window, "null turns it off")
		require.Equal(t, &schedule.Window{Start: "22:00", End: "07:00"}, byName["own"].Config.QuietHours.Window)
	})
}

func TestTimingValidation(t *testing.T) {
	t.Parallel()
	testdb.Dialects(t, func(t *testing.T, db *gorm.DB) {
		b := setup(t, db)
		for _, tc := range []struct {
			name string
			cfg  string
			want map[string]string
		}{
			{"quiet hours start", `{"quietHours": {"start": "9pm", "end": "08:00"}}`, map[string]string{"config.quietHours.start": "must be a time of day HH:MM (00:00 to 23:59)"}},
			{"quiet hours empty", `{"quietHours": {"start": "08:00", "end": "08:00"}}`, map[string]string{"config.quietHours.end": "must differ from start (a window from a time to itself is empty or the whole day)"}},
			{"quiet hours without end", `{"quietHours": {"start": "21:00"}}`, map[string]string{"config.quietHours.end": "must be a time of day HH:MM (00:00 to 23:59)"}},
			{"throttle limit", `{"throttle": {"limit": 0, "window": "1h"}}`, map[string]string{"config.throttle.limit": "must be between 1 and 1000000"}},
			{"throttle window", `{"throttle": {"limit": 3, "window": "an hour"}}`, map[string]string{"config.throttle.window": "must be a Go duration between 1s and 744h, such as 1h or 10m"}},
			{"throttle window too short", `{"throttle": {"limit": 3, "window": "10ms"}}`, map[string]string{"config.throttle.window": "must be a Go duration between 1s and 744h, such as 1h or 10m"}},
			{"throttle key", `{"throttle": {"limit": 3, "window": "1h", "key": "event"}}`, map[string]string{"config.throttle.key": "must be one of [recipient recipient+event]"}},
			{"digest", `{"digest": {"window": "ten minutes", "maxItems": 1, "key": "event"}}`, map[string]string{
				"config.digest.window": "must be a Go duration between 1s and 168h, such as 10m or 1h", "config.digest.maxItems": "must be between 2 and 1000",
				"config.digest.key": "must be one of [recipient]"}},
		} {
			in := sms(b.event, "x")
			require.NoError(t, json.Unmarshal([]byte(tc.cfg), &in.Config), tc.name)
			in.Config.Body = "Hi"
			_, err := b.svc.Create(b.ctx, b.admin, b.coll, in)
			require.Equal(t, tc.want, fields(t, err), tc.name)
		}
	})
}
