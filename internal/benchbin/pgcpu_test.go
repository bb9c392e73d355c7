package benchbin

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
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

// cpuWindow is the CPU time the service, the PostgreSQL cluster (pm 0: not
// on this machine) and this process had spent when a phase began.
type cpuWindow struct {
	p              *process
	pm             int
	svc, pg, local time.Duration
}

func startCPU(b *testing.B, p *process, pm int) cpuWindow {
	b.Helper()
	w := cpuWindow{p: p, pm: pm}
	var err error
	if w.svc, err = p.cpu(); err != nil {
		b.Fatal(err)
	}
	if pm != 0 {
		if w.pg, err = clusterCPU(pm); err != nil {
			b.Fatal(err)
		}
	}
	w.local = selfCPU(b)
	return w
}

// per says what each of n units of work cost each side since the window
// began, in µs: where a phase's CPU goes on a machine whose cores the three
// share.
func (w cpuWindow) per(b *testing.B, n int) string {
	b.Helper()
	svc, err := w.p.cpu()
	if err != nil {
		b.Fatal(err)
	}
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds()/int64(max(n, 1)), 10) }
	pg := "not on this machine"
	if w.pm != 0 {
		c, err := clusterCPU(w.pm)
		if err != nil {
			b.Fatal(err)
		}
		pg = us(c - w.pg)
	}
	return us(svc-w.svc) + " / " + pg + " / " + us(selfCPU(b)-w.local) + " µs"
}

// selfCPU is this process's user and system CPU time.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
