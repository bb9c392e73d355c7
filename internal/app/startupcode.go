package app

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// codeMapping is one mapping of the executable that ReleaseStartupCode may
// drop: read-only, and without a page the process wrote.
type codeMapping struct{ start, end uint64 }

// readOnlyMappings parses /proc/<pid>/smaps and returns path's mappings
// that are neither writable nor shared and hold no anonymous page. On a
// private file mapping an anonymous page is one the process wrote (copy on
// write, e.g. a relocated read-only segment of a PIE build): MADV_DONTNEED
// would put the file's bytes back under it.
func readOnlyMappings(r io.Reader, path string) ([]codeMapping, error) {
	var (
		out  []codeMapping
		cur  codeMapping
		keep bool // cur is path's, read-only, and no anonymous page so far
	)
	flush := func() {
		if keep {
			out = append(out, cur)
		}
		keep = false
	}
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		if name, ok := strings.CutSuffix(fields[0], ":"); ok {
			// "Key: value kB", a line of the current mapping.
			if name == "Anonymous" && (len(fields) < 2 || fields[1] != "0") {
				keep = false
			}
			continue
		}
		// A mapping's header: start-end perms offset dev inode [path].
		flush()
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok || len(fields) < 6 || fields[5] != path || strings.ContainsAny(fields[1], "ws") {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("smaps: bad mapping %q", s.Text())
		}
		cur, keep = codeMapping{start, end}, true
	}
	flush()
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("smaps: %w", err)
	}
	return out, nil
}
