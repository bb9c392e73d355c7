package redact

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// text skips its bearer and NANP patterns when a string cannot match them
// (most log strings: request ids, routes, user ids). A skip must never hide
// a match.
func TestRedactFastPathsNeverSkipAMatch(t *testing.T) {
	t.Parallel()
	corpus := []string{
		"", "http request", "GET", "/v1/collections/:collectionId/actions/:actionId", "1", "a3f09b7c2d4e5f61",
		"9f0b1c2d3e4a5b6c7d8e9f0a1b2c3d4e", "Bearer abc.def", "header bearer xyz", "BASIC dXNlcjpwYXNz", "baſic x", "BeArEr\u00a0x", "ab", "b", "basi", "bearerbasic",
		"Basic\tabc", "409-685-4167", "(409) 685-4167", "409.685.4167", "409 685 4167", "4096854167",
		"call 409-685-4167 now", "1234567890-", "12-345-67890", "v1.2.3-456789012",
		"000816c3-e9b2-440b-8d27-dfaa4cae00ef", "409)-685-4167", "(409)685-4167", "409-685-416", "409-685-41678", "x409 685.4167y",
		"409--685-4167", "4096-85-4167", "409-685-4167", "ab409-685-4167",
	}
	for _, s := range corpus {
		if !mayHaveScheme(s) {
			require.False(t, bearerRE.MatchString(s), "bearer pattern skipped on %q", s)
		}
		if !mayHaveNANP(s) {
			require.False(t, nanpRE.MatchString(s), "NANP pattern skipped on %q", s)
		}
	}
	r := newRedactor(nil)
	require.Equal(t, "Bearer "+Redacted, r.text("Bearer abc.def"))
	require.Equal(t, "baſic "+Redacted, r.text("baſic x"))
	require.Equal(t, "call ***-***-4167 now", r.text("call 409-685-4167 now"))
	require.Equal(t, "a3f09b7c2d4e5f61", r.text("a3f09b7c2d4e5f61"))
}

// Rewriting a JSON document allocates its output, not a copy of each of
// its keys and strings (the envelope on the log sink has dozens).
func TestJSONRewriteDoesNotCopyEachString(t *testing.T) {
	r := newRedactor(nil)
	doc := []byte(`{"detail":{`)
	for i := range 100 {
		if i > 0 {
			doc = append(doc, ',')
		}
		doc = fmt.Appendf(doc, `"key%d":"value %d","n%d":%d`, i, i, i, i)
	}
	doc = append(doc, "}}"...)
	text := string(doc)
	var out []byte
	allocs := testing.AllocsPerRun(20, func() {
		var err error
		out, err = r.json("envelope", text)
		require.NoError(t, err)
	})
	require.JSONEq(t, string(doc), string(out))
	require.LessOrEqual(t, allocs, 2.0)
}
