//go:build !linux

package app

// ReleaseStartupCode does nothing outside Linux: it reads /proc/self/smaps
// and the kernel's MADV_DONTNEED semantics for file mappings.
func ReleaseStartupCode() (int64, error) { return 0, nil }
