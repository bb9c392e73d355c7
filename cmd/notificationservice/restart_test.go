package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/dispatch/intake"
	"github.com/notificationservice/notificationservice/internal/testdb"
)

// TestScheduledDeliveriesSurviveSIGKILL runs the real binary as the only
// worker of a database holding two scheduled notifications: the first comes
// due and is sent, the binary is SIGKILLed before the second is due, and the
// second comes due while no instance runs. A new process finds it, still
// scheduled, and sends it; each delivery is sent exactly once (one attempt,
// one sandbox record). The schedule is rows, not timers: nothing in memory
// is lost with the process.
func TestScheduledDeliveriesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "notificationservice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			var db *gorm.DB
			var env []string
			if dialect == "sqlite" {
				var path string
				db, path = testdb.SQLite(t)
				env = []string{config.EnvName("database.sqlitePath") + "=" + path}
			} else {
				var u string
				db, u = testdb.Postgres(t)
				env = []string{config.EnvName("database.url") + "=" + u}
			}
			cid := seedEmailRule(t, db)
			in := intake.New(db, actions.NewRules(db), nil, nil, nil)
			a := startService(t, bin, env) // first: its start-up is not on the schedule's clock
			now := time.Now()
			first, second := now.Add(time.Second), now.Add(6*time.Second)
			ids := make([]int64, 2)
			for i, at := range []time.Time{first, second} {
				req, err := dispatch.Parse([]byte(fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "REMIND", "sendAt": %d,
  "recipients": [{"email": "r%d@example.com"}]}]}`, cid, at.UnixMilli(), i)), 1<<20)
				require.NoError(t, err)
				res, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: req}})
				require.NoError(t, err)
				ids[i] = res[0].Notifications[0].ID
			}
			status := func(id int64) string {
				var s string
				require.NoError(t, db.Raw("SELECT status FROM deliveries WHERE notification_id = ?", id).Scan(&s).Error)
				return s
			}
			require.Equal(t, dispatch.StatusScheduled, status(ids[0]))

			require.Eventually(t, func() bool { return status(ids[0]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
				"the first is sent when due")
			require.NoError(t, a.Process.Signal(syscall.SIGKILL))
			_ = a.Wait()
			require.True(t, time.Now().Before(second), "the machine was too slow to kill the service before the second was due")
			require.Equal(t, dispatch.StatusScheduled, status(ids[1]), "not sent before its time, not lost with the process")

			_ = startService(t, bin, env)
			require.Eventually(t, func() bool { return status(ids[1]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
				"the second is sent by the next process")
			for _, id := range ids {
				var row struct {
					ID       int64
					Attempts int
					SentTime int64
				}
				require.NoError(t, db.Raw("SELECT id, attempts, sent_time FROM deliveries WHERE notification_id = ?", id).Scan(&row).Error)
				require.Equal(t, 1, row.Attempts, "sent once")
				var records int64
				require.NoError(t, db.Raw("SELECT COUNT(*) FROM sandbox_messages WHERE delivery_id = ?", row.ID).Scan(&records).Error)
				require.EqualValues(t, 1, records, "one message reached the provider")
			}
			var sentAt int64
			require.NoError(t, db.Raw("SELECT sent_time FROM deliveries WHERE notification_id = ?", ids[1]).Scan(&sentAt).Error)
			require.GreaterOrEqual(t, sentAt, second.UnixMilli(), "not before its time")
		})
	}
}

func seedEmailRule(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES ('restart', 'ACTIVE', ?, ?) RETURNING id`, now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'REMIND', 'ACTIVE', ?, ?) RETURNING id`, cid, now, now).Scan(&eid).Error)
	a := actions.Action{CollectionID: cid, EventID: eid, Name: "remind", Status: actions.StatusActive, ConfigName: actions.ConfigEmail,
		Config: actions.Config{Content: actions.Content{Subject: "Reminder", Text: "It is time"}}, CreatedTime: now, UpdatedTime: now}
	require.NoError(t, db.Create(&a).Error)
	return cid
}

// startService runs the binary serve on env (no config file, no queue,
// the sandbox channels) and waits until it is ready; it is killed when the
// test ends.
func startService(t *testing.T, bin string, env []string) *exec.Cmd {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cmd := exec.Command(bin, "-config", filepath.Join(t.TempDir(), "none.yaml"), "serve")
	var clean []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			clean = append(clean, kv)
		}
	}
	cmd.Env = append(append(clean, env...),
		config.EnvName("http.addr")+"="+addr,
		config.EnvName("amqp.enabled")+"=false",
		config.EnvName("dispatch.pollInterval")+"=50ms",
		config.EnvName("log.level")+"=warn",
	)
	logPath := filepath.Join(t.TempDir(), "service.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("service log:\n%s", b)
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "service ready at %s", addr)
	return cmd
}
