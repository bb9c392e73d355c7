package dispatch_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/dispatch"
)

// A macro's string value decodes as encoding/json decodes a string, whether
// it takes Macros.UnmarshalJSON's shortcut (no escapes, valid UTF-8) or not.
func TestMacroStringsDecodeAsJSONStrings(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`"plain"`, `""`, `"<b>Ann & Bob</b>"`, `"caf\u00e9"`, `"café"`, `"tab\there"`, `"quote \" and \\ slash"`,
		`"emoji 😀"`, `"\ud83d\ude00"`, "\"bad \xff utf8\"", "\"cut \xe2\x82 rune\"", `"line\u2028sep"`,
	} {
		var want string
		require.NoError(t, json.Unmarshal([]byte(raw), &want), raw)
		var m dispatch.Macros
		require.NoError(t, json.Unmarshal([]byte(`{"K": `+raw+`}`), &m), raw)
		require.Equal(t, want, m["K"], raw)
	}
}
