package apperr_test

import (
	"errors"
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
