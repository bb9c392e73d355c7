package app

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/notificationservice/notificationservice/internal/channels"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// benchDetail is the notifications/send envelope detail of the golden file
// (one full recipient), as the relay hands it to the log sink.
const benchDetail = `{"id":"USER_INVITEUSER","timestamp":1709786395165,"payload":{"notification":{"name":"USER_INVITEUSER","recipients":[{"email":"externalevents1709786394020@gmail.com","phone":"409-685-4167","pushId":"hj7sdf67sqc9","locale":"en_US","macros":{"FNAME":"John"}}]}},"collectionId":"772","eventType":"notificationservice/notifications/send","userId":"1","actOnBehalfOfUser":0,"roles":["ROLE_SUPER_ADMIN"],"channel":"CSR","envelopeId":"00000000-0000-4000-8000-000000000001","tenant":"dodici","team":"team-inventory","service":"inventory-manager","entityId":"000816c3-e9b2-440b-8d27-dfaa4cae00ef","correlation":{"customer_id":"000816c3-e9b2-440b-8d27-dfaa4cae00ef","order_id":"000816c3-e9b2-440b-8d27-dfaa4cae00ef","requestId":"4f6c1d2e9a0b3c5d"}}`

// BenchmarkLogPath is what the default configuration logs per REST send
// besides the access line: one envelope line (log sink) and one outcome
// line (sandbox accepted), through the app's redacting JSON logger with
// secrets configured, to io.Discard (the handlers' CPU) and to a pipe (plus
// the write system calls, as to a container's stderr).
func BenchmarkLogPath(b *testing.B) {
	for _, out := range []string{"discard", "pipe"} {
		b.Run(out, func(b *testing.B) {
			var w io.Writer = io.Discard
			if out == "pipe" {
				pr, pw, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				go func() { _, _ = io.Copy(io.Discard, pr) }()
				b.Cleanup(func() { pw.Close() })
				w = pw
			}
			log, closeLog := benchLogger(w)
			b.Cleanup(closeLog)
			sink := outbox.NewLogSink(log, "123456789012", "us-east-1")
			ch := logOutcomes(log)(plainChannel{})
			entries := []outbox.Entry{{EnvelopeID: "00000000-0000-4000-8000-000000000001", Source: "notificationservice",
				DetailType: outbox.NotificationsSend, Detail: benchDetail, EventBusName: "default", Time: time.Unix(1709786395, 0)}}
			msgs := []channels.Message{{DeliveryID: 41, NotificationID: 7, CollectionID: 772, Channel: "email"}}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := sink.Put(ctx, entries); err != nil {
					b.Fatal(err)
				}
				ch.Send(ctx, msgs)
			}
		})
	}
}

// benchLogger is the logger serve builds: the default log config with the
// secrets a deployment configures, on a LogOutput.
func benchLogger(w io.Writer) (*slog.Logger, func()) {
	out := NewLogOutput(w)
	return NewLogger(config.Default().Log, out, "hmac-secret-0123456789", "SG.abcdefghijklmnop.qrstuvwxyz0123456789", "twilio-token-abcdef"),
		func() { _ = out.Close() }
}
