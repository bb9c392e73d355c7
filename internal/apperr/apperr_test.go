package apperr_test

import (
	"errors"
	"strings"
	"testing"

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
