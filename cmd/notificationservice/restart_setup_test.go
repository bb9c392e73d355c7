package main

import (
	"context"
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

// restartBundle is what a test that SIGKILLs the real binary and starts it
// again works with: the binary, a migrated database of one dialect holding
// one collection with one event and its email action, the environment that
// points the binary at that database, and an intake on it, so the test
// submits without the binary and reads the rows the binary writes.
type restartBundle struct {
	bin string
	db  *gorm.DB
	env []string
	in  *intake.Intake
	cid int64 // the seeded collection
}

// restartTest builds the binary once, then runs test on SQLite and on
// PostgreSQL, each on a fresh database whose collection has the event named
// event and an active email action configured as cfg.
func restartTest(t *testing.T, event string, cfg actions.Config, test func(t *testing.T, b *restartBundle)) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "notificationservice")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)

	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			b := &restartBundle{bin: bin}
			if dialect == "sqlite" {
				var path string
				b.db, path = testdb.SQLite(t)
				b.env = []string{config.EnvName("database.sqlitePath") + "=" + path}
			} else {
				var u string
				b.db, u = testdb.Postgres(t)
				b.env = []string{config.EnvName("database.url") + "=" + u}
			}
			b.cid = seedRule(t, b.db, event, cfg)
			b.in = intake.New(b.db, actions.NewRules(b.db), nil, nil, nil)
			test(t, b)
		})
	}
}

// start runs the binary on the bundle's database (startService).
func (b *restartBundle) start(t *testing.T) *exec.Cmd {
	t.Helper()
	return startService(t, b.bin, b.env)
}

// sigkill SIGKILLs cmd and waits for it to be gone: no shutdown hook runs,
// so what survives is what the database holds.
func sigkill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
}

// submit takes body (a send request) in through the queue's intake and
// returns its notification's id.
func (b *restartBundle) submit(t *testing.T, body string) int64 {
	t.Helper()
	req, err := dispatch.Parse([]byte(body), 1<<20)
	require.NoError(t, err)
	res, err := b.in.Submit(context.Background(), []intake.Submission{{Source: intake.SourceQueue, Request: req}})
	require.NoError(t, err)
	return res[0].Notifications[0].ID
}

// status is the status of notification id's delivery.
func (b *restartBundle) status(t *testing.T, id int64) string {
	t.Helper()
	var s string
	require.NoError(t, b.db.Raw("SELECT status FROM deliveries WHERE notification_id = ?", id).Scan(&s).Error)
	return s
}

// seedRule adds a collection with the event named event and one active
// email action configured as cfg, and returns the collection's id.
func seedRule(t *testing.T, db *gorm.DB, event string, cfg actions.Config) int64 {
	t.Helper()
	now := time.Now().UnixMilli()
	name := strings.ToLower(event)
	var cid, eid int64
	require.NoError(t, db.Raw(`INSERT INTO collections (name, status, created_time, updated_time) VALUES (?, 'ACTIVE', ?, ?) RETURNING id`, name, now, now).Scan(&cid).Error)
	require.NoError(t, db.Raw(`INSERT INTO events (collection_id, name, status, created_time, updated_time) VALUES (?, ?, 'ACTIVE', ?, ?) RETURNING id`, cid, event, now, now).Scan(&eid).Error)
	a := actions.Action{CollectionID: cid, EventID: eid, Name: name, Status: actions.StatusActive, ConfigName: actions.ConfigEmail,
		Config: cfg, CreatedTime: now, UpdatedTime: now}
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
