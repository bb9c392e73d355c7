package benchbin

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// postmaster is the PID of the PostgreSQL server db is connected to, when
// it runs on this machine (the parent of this session's backend), else 0.
// The harness then reads the server's CPU from /proc as it reads the
// service's: on these two cores PostgreSQL takes as much as the service or
// more, and a figure per delivery says which side a change moved.
func postmaster(db *gorm.DB) int {
	var pid int
	if err := db.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil || pid == 0 {
		return 0
	}
	st, err := readStat(pid)
	if err != nil { // another machine's PID, or one this user may not read
		return 0
	}
	return st.ppid
}

// clusterCPU is the CPU time the PostgreSQL server whose postmaster is pm
// has used so far: the postmaster's and its live children's own (backends,
// WAL writer, checkpointer), plus, through the postmaster's cutime and
// cstime, that of the backends that exited. The difference of two readings
// is what the server did in between, for every database in it.
func clusterCPU(pm int) (time.Duration, error) {
	root, err := readStat(pm)
	if err != nil {
		return 0, err
	}
	total := root.utime + root.stime + root.cutime + root.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pm {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != pm {
			continue // not a child, or it exited while listed
		}
		total += st.utime + st.stime
	}
	if total == 0 {
		return 0, fmt.Errorf("postmaster %d: no CPU time read", pm)
	}
	return ticks(total), nil
}
