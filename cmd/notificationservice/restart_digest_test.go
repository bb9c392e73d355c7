package main

import (
	"context"
	"fmt"
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

// TestDigestSurvivesSIGKILL opens a digest window of three notifications
// while the real binary runs, SIGKILLs it before the window closes, and
// starts another process: the window is rows (the digest's scheduled
// delivery and digest_windows), so the new process sends the digest once,
// with the three items, and the joined deliveries stay digested.
func TestDigestSurvivesSIGKILL(t *testing.T) {
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
			cid := seedDigestRule(t, db)
			a := startService(t, bin, env)
			in := intake.New(db, actions.NewRules(db), nil, nil, nil)
			ids := make([]int64, 3)
			for i := range ids {
				req, err := dispatch.Parse([]byte(fmt.Sprintf(`{"collectionId": %d, "notification": [{"name": "COMMENT", "data": {"n": "c%d"},
  "recipients": [{"id": "ann", "email": "ann@example.com"}]}]}`, cid, i)), 1<<20)
				require.NoError(t, err)
				res, err := in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: req}})
				require.NoError(t, err)
				ids[i] = res[0].Notifications[0].ID
			}
			require.NoError(t, a.Process.Signal(syscall.SIGKILL))
			_ = a.Wait()
			var d struct {
				ID            int64
				Status        string
				NextAttemptAt int64
			}
			require.NoError(t, db.Raw("SELECT id, status, next_attempt_at FROM deliveries WHERE notification_id = ?", ids[0]).Scan(&d).Error)
			require.Equal(t, dispatch.StatusScheduled, d.Status)
			require.True(t, time.Now().UnixMilli() < d.NextAttemptAt, "the machine was too slow to kill the service before the window closed")

			_ = startService(t, bin, env)
			status := func(id int64) string {
				var s string
				require.NoError(t, db.Raw("SELECT status FROM deliveries WHERE notification_id = ?", id).Scan(&s).Error)
				return s
			}
			require.Eventually(t, func() bool { return status(ids[0]) == dispatch.StatusSent }, 30*time.Second, 20*time.Millisecond,
				"the next process sends the digest")
			for _, id := range ids[1:] {
				require.Equal(t, dispatch.StatusDigested, status(id))
			}
			var msgs []string
			require.NoError(t, db.Raw("SELECT message FROM sandbox_messages WHERE delivery_id = ?", d.ID).Scan(&msgs).Error)
			require.Len(t, msgs, 1, "sent once")
			require.True(t, strings.Contains(msgs[0], "3 comments: c0 c1 c2"), msgs[0])
		})
	}
}

func seedDigestRule(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES ('digest', 'ACTIVE', ?, ?) RETURNING id`, now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, 'COMMENT', 'ACTIVE', ?, ?) RETURNING id`, cid, now, now).Scan(&eid).Error)
	a := actions.Action{CollectionID: cid, EventID: eid, Name: "digest", Status: actions.StatusActive, ConfigName: actions.ConfigEmail,
		Config: actions.Config{Content: actions.Content{Subject: "Comments", Text: "{{count}} comments:{{#each items}} {{data.n}}{{/each}}"},
			Digest: &actions.Digest{Window: "4s", MaxItems: 50}}, CreatedTime: now, UpdatedTime: now}
	require.NoError(t, db.Create(&a).Error)
	return cid
}
