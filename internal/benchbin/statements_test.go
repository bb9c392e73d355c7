package benchbin

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"gorm.io/gorm"
)

// envStatements has the harness count the REST send's closed loop with
// pg_stat_statements: which statements a send costs PostgreSQL, in time,
// rows and WAL. The server must load the module
// (shared_preload_libraries), so it is for a private cluster that
// NOTIFY_TEST_DATABASE_URL points at (docs/benchmarks.md), not the shared
// one; the statistics are reset at the phase's start, for every database
// of the server.
const envStatements = "BENCH_PG_STATEMENTS"

// statements is pg_stat_statements over one phase; a zero statements (the
// setting unset) counts nothing.
type statements struct{ db *gorm.DB }

// startStatements resets pg_stat_statements when BENCH_PG_STATEMENTS is
// set, creating the extension in the harness's fresh database first.
func startStatements(b *testing.B, db *gorm.DB) statements {
	b.Helper()
	if os.Getenv(envStatements) == "" {
		return statements{}
	}
	for _, q := range []string{"CREATE EXTENSION IF NOT EXISTS pg_stat_statements", "SELECT pg_stat_statements_reset()"} {
		if err := db.Exec(q).Error; err != nil {
			b.Fatalf("%s: %s: %v (the server must have shared_preload_libraries = 'pg_stat_statements'; docs/benchmarks.md)", envStatements, q, err)
		}
	}
	return statements{db: db}
}

// table is the phase's most expensive statements in the harness's
// database, each per accepted send (sends): calls, rows, execution and
// planning time and WAL. Time is wall time in the server, waits for the
// CPU included: on a saturated machine it shows shares, and the WAL and
// rows show the work.
func (s statements) table(b *testing.B, sends int) string {
	b.Helper()
	if s.db == nil || sends == 0 {
		return ""
	}
	var rows []struct {
		Calls, Rows, WALRecords, WALBytes int64
		Millis                            float64
		Query                             string
	}
	err := s.db.Raw(`SELECT calls, rows, wal_records, wal_bytes::bigint AS wal_bytes,
		total_exec_time + total_plan_time AS millis, regexp_replace(query, '\s+', ' ', 'g') AS query
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY millis DESC LIMIT 12`).Scan(&rows).Error
	if err != nil {
		b.Fatalf("%s: %v", envStatements, err)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\npg_stat_statements over the REST send's closed loop (%d accepted sends; time includes waits for the CPU)\n\n", sends)
	fmt.Fprintf(&t, "| statement | calls | rows per call | µs per send | WAL records / bytes per send |\n|---|---|---|---|---|\n")
	n := float64(sends)
	for _, r := range rows {
		q := r.Query
		if len(q) > 90 {
			q = q[:90] + "…"
		}
		perCall := 0.0
		if r.Calls > 0 {
			perCall = float64(r.Rows) / float64(r.Calls)
		}
		fmt.Fprintf(&t, "| `%s` | %d | %.1f | %.1f | %.1f / %.0f |\n",
			strings.ReplaceAll(q, "|", `\|`), r.Calls, perCall, 1000*r.Millis/n, float64(r.WALRecords)/n, float64(r.WALBytes)/n)
	}
	return t.String()
}
