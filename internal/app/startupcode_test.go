package app

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadOnlyMappings(t *testing.T) {
	const exe = "/app/notificationservice"
	smaps := `00400000-01710000 r-xp 00000000 fe:00 42 /app/notificationservice
Size:              19520 kB
Rss:               14332 kB
Anonymous:             0 kB
01710000-02cc0000 r--p 0130f000 fe:00 42 /app/notificationservice
Size:              22212 kB
Anonymous:             0 kB
02cc0000-02d95000 rw-p 028c0000 fe:00 42 /app/notificationservice
Size:                852 kB
Anonymous:           256 kB
03000000-03001000 r--p 02900000 fe:00 42 /app/notificationservice
Size:                  4 kB
Anonymous:             4 kB
04000000-04001000 r--s 00000000 fe:00 42 /app/notificationservice
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 43 /usr/lib/other.so
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
7fff00000000-7fff00001000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
`
	got, err := readOnlyMappings(strings.NewReader(smaps), exe)
	require.NoError(t, err)
	// The code and the read-only data; not the writable data, not the
	// read-only page the process wrote (relocated), not a shared mapping,
	// not another file's or an anonymous mapping.
	require.Equal(t, []codeMapping{{0x400000, 0x1710000}, {0x1710000, 0x2cc0000}}, got)

	_, err = readOnlyMappings(strings.NewReader("zz-01 r-xp 00000000 fe:00 42 "+exe+"\n"), exe)
	require.Error(t, err, "a header that does not parse is an error, not a mapping skipped")
}
