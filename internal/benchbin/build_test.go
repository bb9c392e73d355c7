package benchbin

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The harness, `make build` and the Dockerfile build the same executable:
// the same tags, stripped, -trimpath; and those tags keep gin's MessagePack
// codec (ugorji/go/codec, 6 MB of the binary) out of it.
func TestBuildMatchesMakefileAndDockerfile(t *testing.T) {
	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^TAGS\s*:?=\s*(.*)$`).FindSubmatch(makefile)
	require.NotNil(t, m, "the Makefile sets TAGS")
	require.Equal(t, buildTags, strings.TrimSpace(string(m[1])))
	require.Regexp(t, `-trimpath -tags "\$\(TAGS\)" -ldflags "\$\(LDFLAGS\)"`, string(makefile))
	require.Regexp(t, `(?m)^LDFLAGS\s*:=\s*-s -w `, string(makefile))

	docker, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	require.Contains(t, string(docker), `go build -trimpath -tags `+buildTags+` -ldflags "-s -w `)

	require.Contains(t, strings.Join(buildFlags(), " "), "-trimpath -tags "+buildTags+" -ldflags -s -w")

	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", "-tags", buildTags, mainPackage).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "github.com/ugorji/go/codec", "the build tags leave the MessagePack codec out")
	require.Contains(t, string(out), "github.com/gin-gonic/gin\n")
}
