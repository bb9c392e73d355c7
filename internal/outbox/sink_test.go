package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/outbox/eventbridgetest"
)

func sampleEntries(n int) []outbox.Entry {
	out := make([]outbox.Entry, n)
	for i := range out {
		d, _ := outbox.BuildDetail(change(i), "env-"+string(rune('a'+i)), time.UnixMilli(1709786405347))
		b, _ := json.Marshal(d)
		out[i] = outbox.Entry{
			EnvelopeID: d.EnvelopeID, Source: "notificationservice", DetailType: outbox.EventCreate,
			Detail: string(b), EventBusName: "notify-bus", Time: time.UnixMilli(1709786405347).UTC(),
		}
	}
	return out
}

// TestEventBridgeSinkSpeaksPutEvents drives the real aws-sdk-go-v2 client
// against the fake: the entry arrives field for field, and each failure the
// API can return maps to what the relay needs to know.
func TestEventBridgeSinkSpeaksPutEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("entries arrive as sent", func(t *testing.T) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		entries := sampleEntries(3)
		errs, err := newSink(t, fake, time.Second).Put(ctx, entries)
		require.NoError(t, err)
		require.Equal(t, []error{nil, nil, nil}, errs)
		got := fake.Accepted()
		require.Len(t, got, 3)
		for i, e := range got {
			require.Equal(t, entries[i].Source, e.Source)
			require.Equal(t, entries[i].DetailType, e.DetailType)
			require.Equal(t, entries[i].Detail, e.Detail)
			require.Equal(t, "notify-bus", e.EventBusName)
			require.NotNil(t, e.Time)
			require.InDelta(t, 1709786405.347, *e.Time, 0.0005)
			require.Equal(t, entries[i].EnvelopeID, e.EnvelopeID())
		}
	})

	t.Run("failed entries", func(t *testing.T) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		entries := sampleEntries(4)
		fake.FailEntries(func(e eventbridgetest.Entry) string {
			switch e.EnvelopeID() {
			case entries[1].EnvelopeID:
				return "ThrottlingException"
			case entries[3].EnvelopeID:
				return "NotAuthorizedForDetailTypeException"
			}
			return ""
		})
		errs, err := newSink(t, fake, time.Second).Put(ctx, entries)
		require.NoError(t, err, "a partial failure is not a failed call")
		require.Len(t, errs, 4)
		require.NoError(t, errs[0])
		require.NoError(t, errs[2])
		var e1, e3 *outbox.EntryError
		require.ErrorAs(t, errs[1], &e1)
		require.Equal(t, "ThrottlingException", e1.Code)
		require.False(t, e1.Permanent())
		require.ErrorAs(t, errs[3], &e3)
		require.True(t, e3.Permanent())
		require.Equal(t, []int{1, 3}, fake.Calls()[0].Failed)
	})

	calls := []struct {
		name     string
		inject   func(*eventbridgetest.Server)
		rejected bool
	}{
		{"throttled", func(f *eventbridgetest.Server) { f.Throttle(1) }, false},
		{"5xx", func(f *eventbridgetest.Server) { f.ServerError(1) }, false},
		{"unavailable", func(f *eventbridgetest.Server) { f.SetDown(true) }, false},
		{"timeout", func(f *eventbridgetest.Server) { f.Slow(1, 2*time.Second) }, false},
		{"invalid request", func(f *eventbridgetest.Server) { f.Reject(1) }, true},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := eventbridgetest.New(t)
			tc.inject(fake)
			limit := 10 * time.Second
			if tc.name == "timeout" {
				limit = 300 * time.Millisecond // the relay bounds each call with outbox.timeout
			}
			cctx, cancel := context.WithTimeout(ctx, limit)
			defer cancel()
			errs, err := newSink(t, fake, 5*time.Second).Put(cctx, sampleEntries(2))
			require.Error(t, err)
			require.Nil(t, errs)
			require.Equal(t, tc.rejected, errors.Is(err, outbox.ErrRejected), "%v", err)
			require.Empty(t, fake.Accepted())
		})
	}

	t.Run("one HTTP request per call: the SDK does not retry", func(t *testing.T) {
		t.Parallel()
		fake := eventbridgetest.New(t)
		fake.ServerError(1)
		_, err := newSink(t, fake, time.Second).Put(ctx, sampleEntries(1))
		require.Error(t, err)
		require.Len(t, fake.Calls(), 1, "the relay, not the SDK, decides when to retry")
	})
}

func TestLogSinkWritesTheEventAsJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sink := outbox.NewLogSink(slog.New(slog.NewJSONHandler(&buf, nil)), "277827593990", "us-east-1")
	entries := sampleEntries(2)
	errs, err := sink.Put(context.Background(), entries)
	require.NoError(t, err)
	require.Equal(t, []error{nil, nil}, errs)

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 2)
	type event struct {
		Version    string         `json:"version"`
		ID         string         `json:"id"`
		DetailType string         `json:"detail-type"`
		Source     string         `json:"source"`
		Account    string         `json:"account"`
		Time       string         `json:"time"`
		Region     string         `json:"region"`
		Resources  []string       `json:"resources"`
		Detail     map[string]any `json:"detail"`
	}
	var line struct {
		Msg          string `json:"msg"`
		EventBusName string `json:"eventBusName"`
		Event        event  `json:"event"`
	}
	require.NoError(t, json.Unmarshal(lines[0], &line))
	require.Equal(t, "envelope", line.Msg)
	require.Equal(t, "notify-bus", line.EventBusName)
	got := line.Event
	require.Equal(t, "0", got.Version)
	require.Equal(t, entries[0].EnvelopeID, got.ID)
	require.Equal(t, outbox.EventCreate, got.DetailType)
	require.Equal(t, "notificationservice", got.Source)
	require.Equal(t, "277827593990", got.Account)
	require.Equal(t, "2024-03-07T04:40:05Z", got.Time)
	require.Equal(t, "us-east-1", got.Region)
	require.Equal(t, []string{}, got.Resources)
	require.Equal(t, "0", got.Detail["id"], "detail is logged as an object, not a string")
	require.Equal(t, entries[0].EnvelopeID, got.Detail["envelopeId"])
}
