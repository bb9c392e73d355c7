package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
)

// Rotating the HMAC secret without downtime: the new secret signs, and
// tokens minted with the previous one keep working until it is removed.
func TestPreviousHMACSecretIsAcceptedDuringRotation(t *testing.T) {
	t.Parallel()
	oldSecret := "old-secret-0123456789-0123456789-abcdef"
	newSecret := "new-secret-0123456789-0123456789-abcdef"
	now := time.Now()
	p := auth.Principal{UserID: "7", Roles: []string{auth.RoleAdmin}, Collections: []int64{3}}
	mint := func(secret string) string {
		tok, err := auth.Mint(config.Auth{HMACSecret: secret, Issuer: "notificationservice"}, p, time.Hour, now)
		require.NoError(t, err)
		return tok
	}
	oldTok, newTok := mint(oldSecret), mint(newSecret)
	other := mint("some-other-secret-0123456789-0123456789")

	verifier := func(cfg config.Auth) *auth.Verifier {
		cfg.Issuer = "notificationservice"
		v, err := auth.NewVerifier(context.Background(), cfg)
		require.NoError(t, err)
		return v
	}

	// Before: only the old secret.
	before := verifier(config.Auth{HMACSecret: oldSecret})
	_, err := before.Verify(newTok)
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	// During: the new secret signs, the old one is still accepted.
	during := verifier(config.Auth{HMACSecret: newSecret, PreviousHMACSecret: oldSecret})
	for _, tok := range []string{oldTok, newTok} {
		got, err := during.Verify(tok)
		require.NoError(t, err)
		require.Equal(t, "7", got.UserID)
	}
	_, err = during.Verify(other)
	require.ErrorIs(t, err, auth.ErrInvalidToken, "only the two configured secrets are accepted")

	// After: the previous secret is removed and its tokens stop working.
	after := verifier(config.Auth{HMACSecret: newSecret})
	_, err = after.Verify(oldTok)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = after.Verify(newTok)
	require.NoError(t, err)
}

func TestPreviousHMACSecretIsValidated(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Auth.PreviousHMACSecret = "short"
	require.ErrorContains(t, cfg.Validate(), "auth.previousHMACSecret")
	cfg.Auth.PreviousHMACSecret = cfg.Auth.HMACSecret
	require.ErrorContains(t, cfg.Validate(), "auth.previousHMACSecret")
	cfg.Auth.PreviousHMACSecret = "another-secret-0123456789-0123456789"
	require.NoError(t, cfg.Validate())
}
