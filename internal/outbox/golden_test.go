package outbox_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/status"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/preferences"
	"github.com/notificationservice/notificationservice/internal/schedule"
	"github.com/notificationservice/notificationservice/internal/suppressions"
	"github.com/notificationservice/notificationservice/internal/webhooks"
)

// update regenerates testdata/*.golden.json: go test ./internal/outbox -run Golden -update
var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// goldenEnvelopeID stands in for the random per-envelope UUID so the golden
// files are stable.
const goldenEnvelopeID = "00000000-0000-4000-8000-000000000001"

// The catalogue's caller: user 1, a super admin on the CSR channel.
var seedActor = auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR"}

// The producer headers of seed 004's example, as a send carries them.
var seedProducer = &outbox.Producer{Tenant: "dodici", Team: "team-inventory", Service: "inventory-manager",
	EntityID: "000816c3-e9b2-440b-8d27-dfaa4cae00ef", Correlation: map[string]string{
		"order_id": "000816c3-e9b2-440b-8d27-dfaa4cae00ef", "customer_id": "000816c3-e9b2-440b-8d27-dfaa4cae00ef",
		"requestId": "4f6c1d2e9a0b3c5d"}}

// The payloads are the real models of the packages that record them, so a
// renamed or retyped field there fails here.
type goldenCase struct {
	name   string // testdata/<name>.golden.json, and testdata/seed/<name>.json when the catalogue has it
	change outbox.Change
	at     int64 // the clock, epoch ms: the catalogue's detail.timestamp
}

func goldenCases() []goldenCase {
	off := false
	resetEmail := actions.Action{
		ID: 42453, CollectionID: 775, Name: "Send Reset Email", Status: actions.StatusActive,
		Description: "Used to Send Reset Email", EventID: 42297, ConfigName: actions.ConfigEmail,
		Template: "d-1257a7b8169f4d84aa3393cb4437cbcf", UpdatedTime: 1709786405337, CreatedTime: 1709786405337,
	}
	inactive := resetEmail
	inactive.Status, inactive.UpdatedTime, inactive.CreatedTime = actions.StatusInactive, 1709786409660, 1709786405000
	accounts := collections.Collection{ID: 772, Name: "accounts", Description: "Account lifecycle emails", Status: collections.StatusActive,
		Timezone: "UTC", CreatedTime: 1709786360000, UpdatedTime: 1709786360000}
	renamed := accounts
	renamed.Name, renamed.UpdatedTime = "accounts-v2", 1709786361000
	renamed.DefaultFromEmail, renamed.DefaultFromName = "accounts@example.com", "Example Accounts"
	renamed.Timezone, renamed.QuietHours = "Europe/Paris", &schedule.Window{Start: "21:00", End: "08:00"}
	renamed.Tenant = "dodici"

	hook := webhooks.Endpoint{ID: 31, CollectionID: 772, URL: "https://hooks.example.com/notify", Description: "CRM sync",
		EventTypes: []string{outbox.TypeNotificationAccepted}, State: webhooks.StatePendingValidation,
		CreatedTime: 1709786370000, UpdatedTime: 1709786370000,
		// Never in an envelope: the test fails if one leaks.
		Secret: "sealed-secret", PreviousSecret: "sealed-previous"}
	validated := hook
	validated.State, validated.UpdatedTime = webhooks.StateActive, 1709786370400
	validated.LastValidation = &webhooks.Validation{Time: 1709786370100, OK: true, StatusCode: 200}

	bounced := suppressions.Suppression{ID: 9, CollectionID: 772, Address: "externalevents1709786394020@gmail.com", Channel: "email",
		Reason: "bounce (bounce): 5.1.1 The email account that you tried to reach does not exist", Source: suppressions.SourceSendGridBounce,
		CreatedBy: "sendgrid", CreatedTime: 1709786390000}

	return []goldenCase{
		{"action_create", outbox.Change{DetailType: outbox.ActionCreate, EntityID: "42453", CollectionID: 775,
			Payload: map[string]any{"action": resetEmail}, Actor: seedActor}, 1709786405347},
		{"action_update", outbox.Change{DetailType: outbox.ActionUpdate, EntityID: "42453", CollectionID: 775,
			Payload: map[string]any{"action": inactive}, Actor: seedActor}, 1709786409670},
		{"action_delete", outbox.Change{DetailType: outbox.ActionDelete, EntityID: "42509", CollectionID: 776,
			Payload: actions.Deleted{ResponseCode: actions.DeletedCode, ResponseMessage: actions.DeletedMessage, TimeStamp: "1709786420325"}, Actor: seedActor}, 1709786420327},
		{"event_create", outbox.Change{DetailType: outbox.EventCreate, EntityID: "42129", CollectionID: 772,
			Payload: map[string]any{"event": collections.Event{ID: 42129, CollectionID: 772, Name: "ExternalEvents1709786366982",
				Description: "Events description", Status: collections.StatusActive, UpdatedTime: 1709786367854, CreatedTime: 1709786367854}}, Actor: seedActor}, 1709786367875},
		{"event_update", outbox.Change{DetailType: outbox.EventUpdate, EntityID: "42129", CollectionID: 772,
			Payload: map[string]any{"event": collections.Event{ID: 42129, CollectionID: 772, Name: "ExternalEvents1709786379551",
				Description: "Events description1709786379551", Status: collections.StatusActive,
				Condition: `recipient.locale startsWith "fr"`, Required: true, UpdatedTime: 1709786380278, CreatedTime: 1709786368000}}, Actor: seedActor}, 1709786380289},
		{"event_delete", outbox.Change{DetailType: outbox.EventDelete, EntityID: "42241", CollectionID: 774,
			Payload: collections.Deleted{ResponseCode: collections.EventDeletedCode, ResponseMessage: collections.EventDeletedMessage, TimeStamp: "1709786389986"}, Actor: seedActor}, 1709786389988},
		{"notifications_send", outbox.Change{DetailType: outbox.NotificationsSend, EntityID: "USER_INVITEUSER", CollectionID: 772,
			Payload: map[string]any{"notification": dispatch.Notification{Name: "USER_INVITEUSER", Recipients: []dispatch.Recipient{{
				Email: "externalevents1709786394020@gmail.com", PushID: "hj7sdf67sqc9", Phone: "409-685-4167",
				Locale: "en_US", Macros: dispatch.Macros{"FNAME": "John"},
			}}}}, Actor: seedActor, Producer: seedProducer}, 1709786395165},
		{"notifications_cancel", outbox.Change{DetailType: outbox.NotificationsCancel, EntityID: "8812", CollectionID: 772,
			Payload: map[string]any{"notification": status.Cancellation{ID: 8812, Name: "USER_INVITEUSER", Canceled: 2}},
			Actor:   seedActor, Href: "/v1/collections/772/notifications/8812"}, 1709786396000},
		{"collection_create", outbox.Change{DetailType: outbox.CollectionCreate, EntityID: "772", CollectionID: 772,
			Payload: map[string]any{"collection": accounts}, Actor: seedActor}, 1709786360010},
		{"collection_update", outbox.Change{DetailType: outbox.CollectionUpdate, EntityID: "772", CollectionID: 772,
			Payload: map[string]any{"collection": renamed}, Actor: seedActor}, 1709786361010},
		{"collection_delete", outbox.Change{DetailType: outbox.CollectionDelete, EntityID: "772", CollectionID: 772,
			Payload: collections.Deleted{ResponseCode: collections.CollectionDeletedCode, ResponseMessage: collections.CollectionDeletedMessage, TimeStamp: "1709786362000"},
			Actor:   auth.Principal{UserID: "1", Roles: []string{auth.RoleSuperAdmin}, Channel: "CSR", OnBehalfOf: 42}}, 1709786362010},
		{"webhook_create", outbox.Change{DetailType: outbox.WebhookCreate, EntityID: "31", CollectionID: 772,
			Payload: map[string]any{"webhook": hook}, Actor: seedActor}, 1709786370010},
		{"webhook_update", outbox.Change{DetailType: outbox.WebhookUpdate, EntityID: "31", CollectionID: 772,
			Payload: map[string]any{"webhook": validated}, Actor: seedActor}, 1709786370410},
		{"webhook_delete", outbox.Change{DetailType: outbox.WebhookDelete, EntityID: "31", CollectionID: 772,
			Payload: webhooks.Deleted{ResponseCode: webhooks.DeletedCode, ResponseMessage: webhooks.DeletedMessage, TimeStamp: "1709786380000"}, Actor: seedActor}, 1709786380010},
		{"suppression_create", outbox.Change{DetailType: outbox.SuppressionCreate, EntityID: "9", CollectionID: 772,
			Payload: map[string]any{"suppression": bounced}, Actor: auth.Principal{UserID: "sendgrid"}}, 1709786390010},
		{"suppression_delete", outbox.Change{DetailType: outbox.SuppressionDelete, EntityID: "9", CollectionID: 772,
			Payload: map[string]any{"suppression": bounced}, Actor: seedActor}, 1709786399010},
		{"preferences_update", outbox.Change{DetailType: outbox.PreferencesUpdate, EntityID: "user-4711", CollectionID: 772,
			Payload: map[string]any{"preferences": preferences.Changed{CollectionID: 772, RecipientID: "user-4711", Source: preferences.SourceAPI, UpdatedTime: 1709786390000,
				Preferences: preferences.Document{Channels: map[string]bool{"email": true, "sms": false},
					Events: map[string]preferences.Event{"USER_INVITEUSER": {Enabled: &off}, "ORDER_SHIPPED": {Channels: map[string]bool{"push": false}}}}}},
			Actor: seedActor}, 1709786390010},
	}
}

// goldenEntry is a PutEvents entry as the golden files show it: Detail
// decoded, so a reviewer reads the object and not an escaped string.
type goldenEntry struct {
	Source       string          `json:"Source"`
	DetailType   string          `json:"DetailType"`
	EventBusName string          `json:"EventBusName"`
	Time         string          `json:"Time"`
	Detail       json.RawMessage `json:"Detail"`
}

func goldenEntryOf(e outbox.Entry) goldenEntry {
	return goldenEntry{
		Source: e.Source, DetailType: e.DetailType, EventBusName: e.EventBusName,
		Time: e.Time.Format(time.RFC3339Nano), Detail: json.RawMessage(e.Detail),
	}
}

// TestGoldenEnvelopes builds the entry for every detail type with a fixed
// clock and envelope id and compares it with testdata/<type>.golden.json,
// byte for byte (so field names, order and JSON types are all pinned).
func TestGoldenEnvelopes(t *testing.T) {
	t.Parallel()
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := time.UnixMilli(tc.at)
			d, err := outbox.BuildDetail(tc.change, goldenEnvelopeID, at)
			require.NoError(t, err)
			detail, err := json.Marshal(d)
			require.NoError(t, err)
			e := outbox.EntryFromRow(outbox.Row{
				EnvelopeID: goldenEnvelopeID, DetailType: tc.change.DetailType, Detail: string(detail), CreatedAt: tc.at,
			}, "notificationservice", "default")

			requireGolden(t, tc.name, goldenEntryOf(e))
			require.Equal(t, tc.change.DetailType, e.DetailType)
			require.Equal(t, at.UTC(), e.Time)
		})
	}
}

// requireGolden compares v, indented JSON, with testdata/<name>.golden.json
// byte for byte (rewriting the file under -update).
func requireGolden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "missing golden file; run with -update")
	require.Equal(t, string(want), string(got), "differs from %s (run with -update if the change is intended)", path)
}

// TestDetailMatchesCatalogue compares the built detail with the event
// catalogue's own example for each of its seven types, value and JSON type
// alike (json.Number keeps 42453 and "42453" apart). The only additions
// allowed are detail.envelopeId, the action's config object, the event's
// rule-engine fields (condition and required, present only when set) and a
// send's producer fields.
func TestDetailMatchesCatalogue(t *testing.T) {
	t.Parallel()
	seen := 0
	for _, tc := range goldenCases() {
		raw, err := os.ReadFile(filepath.Join("testdata", "seed", tc.name+".json"))
		if os.IsNotExist(err) {
			continue // collection types are ours; the catalogue predates them
		}
		require.NoError(t, err)
		seen++
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seed struct {
				DetailType string         `json:"detail-type"`
				Source     string         `json:"source"`
				Detail     map[string]any `json:"detail"`
			}
			decode(t, raw, &seed)
			require.Equal(t, seed.DetailType, tc.change.DetailType)

			d, err := outbox.BuildDetail(tc.change, goldenEnvelopeID, time.UnixMilli(tc.at))
			require.NoError(t, err)
			b, err := json.Marshal(d)
			require.NoError(t, err)
			var got map[string]any
			decode(t, b, &got)

			require.Equal(t, goldenEnvelopeID, got["envelopeId"], "envelopeId must be a string")
			delete(got, "envelopeId")
			if tc.change.Producer != nil {
				// A send adds the producer headers (seed 004), which the
				// catalogue predates.
				for _, k := range []string{"tenant", "team", "service", "entityId"} {
					require.IsType(t, "", got[k], k)
					delete(got, k)
				}
				require.IsType(t, map[string]any{}, got["correlation"], "correlation must be an object")
				delete(got, "correlation")
			}
			if p, ok := got["payload"].(map[string]any)["action"].(map[string]any); ok {
				require.IsType(t, map[string]any{}, p["config"], "action config must be an object")
				delete(p, "config")
			}
			if p, ok := got["payload"].(map[string]any)["event"].(map[string]any); ok {
				delete(p, "condition")
				delete(p, "required")
			}
			require.Equal(t, seed.Detail, got)
		})
	}
	require.Equal(t, 7, seen, "the catalogue has seven envelope types")
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(v))
}
