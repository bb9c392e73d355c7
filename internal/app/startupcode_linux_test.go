package app

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// rssFile is the process's resident file-backed pages (RssFile), in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// The test binary's own start-up touched several MiB of its code; released,
// most of it leaves the resident set, and the code that runs next (this
// test) faults back in and works.
func TestReleaseStartupCode(t *testing.T) {
	before := rssFile(t)
	released, err := ReleaseStartupCode()
	require.NoError(t, err)
	after := rssFile(t)
	require.Positive(t, released, "the executable's read-only mappings")
	t.Logf("RssFile %d KiB -> %d KiB", before>>10, after>>10)
	require.Less(t, after, before-(2<<20), "RssFile %d KiB before, %d KiB after: at least 2 MiB released", before>>10, after>>10)
	// Still running: released pages come back on use.
	_, err = readOnlyMappings(strings.NewReader(""), "x")
	require.NoError(t, err)
}
