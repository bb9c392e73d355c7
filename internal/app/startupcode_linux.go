package app

import (
	"fmt"
	"os"
	"syscall"
)

// ReleaseStartupCode drops the executable's read-only pages (code and
// read-only data) from the process's page tables, once start-up is done,
// and returns how many bytes of mappings it covered (runtime.
// releaseStartupCode, docs/configuration.md).
//
// Start-up runs code that never runs again (the init of every linked
// package, configuration, migrations), and the kernel maps each page a
// fault touches with its neighbours (fault-around, 64 KB blocks): at rest
// about 28 MiB of the resident set was the executable, half of it not
// needed after start-up. A page still in use faults back in from the page
// cache, which keeps it (a minor fault, once); the rest leave the resident
// set and are clean page cache the kernel may reclaim without the process.
//
// MADV_DONTNEED, not MADV_PAGEOUT: the kernel pages out a file's pages only
// for a process that owns the file or may write it, and the container runs
// as nonroot on a root-owned binary (PAGEOUT left RssFile at 28 MiB there).
func ReleaseStartupCode() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("app: release start-up code: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("app: release start-up code: %w", err)
	}
	ms, err := readOnlyMappings(f, exe)
	_ = f.Close()
	if err != nil {
		return 0, fmt.Errorf("app: release start-up code: %w", err)
	}
	var released int64
	for _, m := range ms {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("app: release start-up code: madvise %x-%x: %w", m.start, m.end, errno)
		}
		released += int64(m.end - m.start)
	}
	return released, nil
}
