package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

const queueMessage = `{"collectionId": 1, "notification": [{"name": "USER_INVITEUSER",
  "recipients": [{"email": "john@example.com", "macros": {"FNAME": "John"}}]}]}`

// publish puts the message on NotificationQueue (declaring it if the service
// never ran) persistent, with the message id asked for, from an argument, a
// file or stdin, and says what it did.
func TestPublishPutsTheMessageOnTheQueue(t *testing.T) {
	conn := dialTestBroker(t)
	cfg := testTopology(t)
	deleteTopology(t, conn, cfg) // publish declares it: the queue does not exist yet
	ch, err := conn.Channel()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ch.Close() })
	db := filepath.Join(t.TempDir(), "x.db")

	next := func() amqp.Delivery {
		t.Helper()
		d, ok, err := ch.Get(cfg.Queue, true)
		require.NoError(t, err)
		require.True(t, ok, "nothing on %s", cfg.Queue)
		require.Equal(t, uint8(amqp.Persistent), d.DeliveryMode, "persistent: it survives a broker restart")
		require.Equal(t, "application/json", d.ContentType)
		return d
	}

	out, err := runCmd(t, db, "publish", "-message-id", "invite-42", queueMessage)
	require.NoError(t, err)
	require.Contains(t, out, "published message invite-42")
	require.Contains(t, out, "queue "+cfg.Queue)
	require.Contains(t, out, "confirmed by the broker")
	require.NotContains(t, out, "guest:guest", "the password is not printed")
	d := next()
	require.Equal(t, "invite-42", d.MessageId)
	require.JSONEq(t, queueMessage, string(d.Body))

	file := filepath.Join(t.TempDir(), "m.json")
	require.NoError(t, os.WriteFile(file, []byte(queueMessage+"\n"), 0o600))
	out, err = runCmd(t, db, "publish", "-file", file)
	require.NoError(t, err)
	d = next()
	require.NotEmpty(t, d.MessageId, "a message id is always set, so a redelivery is deduplicated")
	require.Contains(t, out, "published message "+d.MessageId)
	require.JSONEq(t, queueMessage, string(d.Body))

	loaded, err := config.Load("", os.Environ())
	require.NoError(t, err)
	var stdout bytes.Buffer
	require.NoError(t, publish(loaded, []string{"-message-id", "from-stdin"}, strings.NewReader(queueMessage), &stdout, &stdout))
	d = next()
	require.Equal(t, "from-stdin", d.MessageId)
	require.JSONEq(t, queueMessage, string(d.Body))
}

func TestPublishRefusesWhatIsNotAJSONObject(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	for _, args := range [][]string{{"not json"}, {"[1, 2]"}, {"{}", "{}"}} {
		_, err := runCmd(t, db, append([]string{"publish", "-amqp", "amqp://127.0.0.1:1/"}, args...)...)
		require.Error(t, err, "%q", args)
		require.Contains(t, err.Error(), "publish:", "%q: refused before connecting", args)
	}
}
