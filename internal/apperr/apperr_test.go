package apperr_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/apperr"
)

func TestFieldsCollect(t *testing.T) {
	t.Parallel()
	var f apperr.Fields
	f.Collect(nil)
	require.NoError(t, f.Err())

	f.Collect(apperr.Invalid("bad page", apperr.Detail{Field: "limit", Reason: "too big"}, apperr.Detail{Field: "cursor", Reason: "unknown"}))
	f.Add("status", "unknown")
	f.Collect(errors.New("boom"))

	err := f.Err()
	require.Equal(t, apperr.InvalidArgument, apperr.KindOf(err))
	e, _ := apperr.As(err)
	require.Equal(t, []apperr.Detail{
		{Field: "limit", Reason: "too big"},
		{Field: "cursor", Reason: "unknown"},
		{Field: "status", Reason: "unknown"},
		{Field: "request", Reason: "boom"},
	}, e.Details)
}

func TestKindsAndIs(t *testing.T) {
	t.Parallel()
	err := apperr.New(apperr.NotFound, "action %d not found", 7)
	require.True(t, errors.Is(err, &apperr.Error{Kind: apperr.NotFound}))
	require.False(t, errors.Is(err, &apperr.Error{Kind: apperr.AlreadyExists}))
	require.Equal(t, "NOT_FOUND", apperr.KindOf(err).String())
	require.Equal(t, apperr.Internal, apperr.KindOf(errors.New("plain")))
	require.Equal(t, "FAILED_PRECONDITION", apperr.PreconditionFailed.String())
}

func TestFieldsEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"noreply@example.com", true},
		{"first.last+tag@mail.example.co.uk", true},
		{"", false},
		{"nobody", false},
		{"Bob <bob@example.com>", false}, // the name has a field of its own
		{" bob@example.com", false},
		{"bob@example.com ", false},
		{strings.Repeat("a", 243) + "@example.com", false}, // 255 characters
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			var f apperr.Fields
			f.Email("from", tc.value)
			if tc.ok {
				require.Empty(t, f)
				return
			}
			require.Equal(t, apperr.Fields{{Field: "from", Reason: "must be an email address such as noreply@example.com"}}, f)
		})
	}
}

func TestValidText(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{
		"":            true,
		"plain":       true,
		"héllo, 世界 🎉": true,
		"a\x00b":      false,
		"\xff":        false,
		"ab\xe4\xb8":  false, // a three-byte character cut after two
	} {
		require.Equal(t, ok, apperr.ValidText(s), "%q", s)
		var f apperr.Fields
		require.Equal(t, ok, f.Text("name", s))
		if !ok {
			require.Equal(t, apperr.Fields{{Field: "name", Reason: apperr.TextReason}}, f)
		}
	}
}

// TestTruncate cuts strings of one- to four-byte characters at every length
// and checks the result is valid text, within the bound, and a prefix of the
// input (marked when cut): a byte cut would split the multi-byte ones.
func TestTruncate(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"plain ascii text",
		"é" + strings.Repeat("ü", 40),           // two bytes each
		strings.Repeat("世界", 30),                // three bytes each
		strings.Repeat("🎉x", 20),                // four bytes, then one
		"mixed: aé世🎉 " + strings.Repeat("ß", 9), // all widths
	}
	for _, s := range inputs {
		for n := 0; n <= len(s)+1; n++ {
			got := apperr.Truncate(s, n)
			require.True(t, utf8.ValidString(got), "Truncate(%q, %d) = %q splits a character", s, n, got)
			require.LessOrEqual(t, len(got), n, "Truncate(%q, %d) = %q", s, n, got)
			if len(s) <= n {
				require.Equal(t, s, got)
				continue
			}
			prefix := got
			if n > len("…") {
				require.True(t, strings.HasSuffix(got, "…"), "a cut is marked: %q", got)
				prefix = strings.TrimSuffix(got, "…")
			}
			require.True(t, strings.HasPrefix(s, prefix), "Truncate(%q, %d) = %q", s, n, got)
			require.Greater(t, len(prefix), n-len("…")-utf8.UTFMax, "cuts no more than one character short")
		}
	}
	// What it cannot cut cleanly, it makes storable.
	require.Equal(t, "a\uFFFDb\uFFFD", apperr.Truncate("a\x00b\xff", 100))
	require.True(t, apperr.ValidText(apperr.Truncate("ab\xe4\xb8"+strings.Repeat("x", 50), 10)))
}
