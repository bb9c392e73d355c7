package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
)

// runCmd runs the command line with a config file that points SQLite into a
// temporary directory.
func runCmd(t *testing.T, dbPath string, args ...string) (string, error) {
	t.Helper()
	t.Setenv("NOTIFY_DATABASE_SQLITE_PATH", dbPath)
	var out, errOut bytes.Buffer
	err := run(append([]string{"-config", filepath.Join(t.TempDir(), "none.yaml")}, args...), &out, &errOut)
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := runCmd(t, filepath.Join(t.TempDir(), "x.db"), "version")
	require.NoError(t, err)
	require.Equal(t, version+"\n", out)
}

// The token the command mints is one the service accepts, with the claims asked for.
func TestTokenMintsAVerifiableToken(t *testing.T) {
	out, err := runCmd(t, filepath.Join(t.TempDir(), "x.db"),
		"token", "-user", "42", "-roles", "ROLE_ADMIN,ROLE_VIEWER", "-channel", "CSR", "-collections", "3,5")
	require.NoError(t, err)

	v, err := auth.NewVerifier(t.Context(), config.Default().Auth)
	require.NoError(t, err)
	p, err := v.Verify(strings.TrimSpace(out))
	require.NoError(t, err)
	require.Equal(t, "42", p.UserID)
	require.Equal(t, []string{auth.RoleAdmin, auth.RoleViewer}, p.Roles)
	require.Equal(t, "CSR", p.Channel)
	require.Equal(t, []int64{3, 5}, p.Collections)
	require.True(t, p.CanManage(5))
	require.False(t, p.CanManage(4))
}

func TestTokenRejectsBadCollections(t *testing.T) {
	_, err := runCmd(t, filepath.Join(t.TempDir(), "x.db"), "token", "-collections", "3,x")
	require.ErrorContains(t, err, `"x" is not an id`)
}

// migrate status lists every migration; up applies them; down rolls the last back.
func TestMigrateCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "m.db")
	out, err := runCmd(t, db, "migrate", "status")
	require.NoError(t, err)
	require.Contains(t, out, "00001  pending")

	_, err = runCmd(t, db, "migrate", "up")
	require.NoError(t, err)
	out, err = runCmd(t, db, "migrate", "status")
	require.NoError(t, err)
	require.NotContains(t, out, "pending")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]

	out, err = runCmd(t, db, "migrate", "down")
	require.NoError(t, err)
	require.Contains(t, out, "rolled back version")
	out, err = runCmd(t, db, "migrate", "status")
	require.NoError(t, err)
	require.Contains(t, out, strings.Replace(last, "applied", "pending", 1))
}

func TestUnknownCommandAndBadConfig(t *testing.T) {
	_, err := runCmd(t, filepath.Join(t.TempDir(), "x.db"), "frobnicate")
	require.ErrorContains(t, err, `unknown command "frobnicate"`)

	t.Setenv("NOTIFY_LOG_LEVEL", "loud")
	_, err = runCmd(t, filepath.Join(t.TempDir(), "x.db"), "migrate", "status")
	require.ErrorContains(t, err, "log.level (NOTIFY_LOG_LEVEL)")
}

// README: `make test` with NOTIFY_TEST_DATABASE_URL / NOTIFY_TEST_AMQP_URL
// exported. The commands (and the tests that run them) inherit those, and
// they must not be taken for unknown configuration.
func TestCommandsIgnoreTheTestSuiteVariables(t *testing.T) {
	t.Setenv("NOTIFY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	t.Setenv("NOTIFY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	db := filepath.Join(t.TempDir(), "x.db")
	_, err := runCmd(t, db, "token")
	require.NoError(t, err)
	out, err := runCmd(t, db, "migrate", "status")
	require.NoError(t, err)
	require.Contains(t, out, "00001  pending")
}

// serve applies runtime.memoryLimit as the Go runtime's soft memory limit,
// unless GOMEMLIMIT is set, which wins.
func TestServeAppliesTheMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	// A database path under a regular file cannot be opened: serve applies
	// the runtime settings first, then fails at once instead of serving.
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	db := filepath.Join(notDir, "x.db")

	t.Setenv("NOTIFY_RUNTIME_MEMORY_LIMIT", "50331648")
	_, err := runCmd(t, db, "serve")
	require.Error(t, err)
	require.Equal(t, int64(48<<20), debug.SetMemoryLimit(-1), "runtime.memoryLimit applied")

	t.Setenv("NOTIFY_RUNTIME_MEMORY_LIMIT", "0")
	_, err = runCmd(t, db, "serve")
	require.Error(t, err)
	require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "0 is no limit")

	t.Setenv("GOMEMLIMIT", "40MiB") // the runtime read it at start; serve must leave the limit alone
	debug.SetMemoryLimit(40 << 20)
	t.Setenv("NOTIFY_RUNTIME_MEMORY_LIMIT", "50331648")
	_, err = runCmd(t, db, "serve")
	require.Error(t, err)
	require.Equal(t, int64(40<<20), debug.SetMemoryLimit(-1), "GOMEMLIMIT wins")
}

// serve applies runtime.gcPercent as the GC's target, unless GOGC is set,
// which wins.
func TestServeAppliesTheGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	db := filepath.Join(notDir, "x.db")

	t.Setenv("NOTIFY_RUNTIME_GC_PERCENT", "40")
	_, err := runCmd(t, db, "serve")
	require.Error(t, err)
	require.Equal(t, 40, debug.SetGCPercent(100), "runtime.gcPercent applied")

	t.Setenv("GOGC", "300") // the runtime read it at start; serve must leave the target alone
	debug.SetGCPercent(300)
	_, err = runCmd(t, db, "serve")
	require.Error(t, err)
	require.Equal(t, 300, debug.SetGCPercent(100), "GOGC wins")

	t.Setenv("NOTIFY_RUNTIME_GC_PERCENT", "0")
	_, err = runCmd(t, db, "serve")
	require.ErrorContains(t, err, "runtime.gcPercent")
}

// The defaults: Go's own GC target (50 took 6-11 MiB off the drain's
// peak for 12-16% more CPU per delivery), and the start-up code released.
func TestDefaultRuntime(t *testing.T) {
	r := config.Default().Runtime
	require.Equal(t, 100, r.GCPercent)
	require.True(t, r.ReleaseStartupCode)
}

// The embedded default sets a soft memory limit.
// The default is no limit: with 32 MiB the binary harness's enqueue→sent
// p99 at 1,000 msg/s was 936 ms against 36 ms without it (GC under a
// limit near the live heap); operators who want flat RSS set one.
func TestDefaultMemoryLimit(t *testing.T) {
	require.Zero(t, config.Default().Runtime.MemoryLimit)
}
