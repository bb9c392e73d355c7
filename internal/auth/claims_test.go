package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// TestExpiryHonoursTheConfiguredLeeway checks the last instant a token is
// accepted: exp+auth.leeway, exclusive. Each check uses a fresh verifier so
// the verified-token cache is out of the picture.
func TestExpiryHonoursTheConfiguredLeeway(t *testing.T) {
	t.Parallel()
	issued := time.Unix(1_700_000_000, 0)
	const ttl = 10 * time.Second
	exp := issued.Add(ttl)
	for _, tc := range []struct {
		name   string
		leeway time.Duration
	}{
		{"default, no leeway", 0},
		{"30s leeway", 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default().Auth
			require.Equal(t, time.Duration(0), cfg.Leeway, "the default is exact")
			cfg.Leeway = tc.leeway
			tok, err := Mint(cfg, Principal{UserID: "1", Roles: []string{RoleAdmin}}, ttl, issued)
			require.NoError(t, err)
			verifyAt := func(at time.Time) error {
				now := at
				_, err := clockVerifier(t, cfg, &now).Verify(tok)
				return err
			}
			last := exp.Add(tc.leeway).Add(-time.Nanosecond)
			require.NoError(t, verifyAt(last), "accepted until exp+leeway")
			err = verifyAt(exp.Add(tc.leeway))
			require.ErrorIs(t, err, ErrInvalidToken, "refused at exp+leeway")
			require.ErrorIs(t, err, jwt.ErrTokenExpired)
		})
	}
}

func TestLeewayIsValidated(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Auth.Leeway = -time.Second
	require.ErrorContains(t, cfg.Validate(), "auth.leeway")
	cfg.Auth.Leeway = 6 * time.Minute
	require.ErrorContains(t, cfg.Validate(), "auth.leeway")
	cfg.Auth.Leeway = time.Minute
	require.NoError(t, cfg.Validate())
}

// TestIssuerIsChecked: with auth.issuer set, only tokens naming that issuer
// are accepted; a token from another issuer, or naming none, is refused.
func TestIssuerIsChecked(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Auth
	require.NotEmpty(t, cfg.Issuer)
	now := time.Unix(1_700_000_000, 0)
	p := Principal{UserID: "1", Roles: []string{RoleSuperAdmin}}
	mint := func(issuer string) string {
		c := cfg
		c.Issuer = issuer
		tok, err := Mint(c, p, time.Hour, now)
		require.NoError(t, err)
		return tok
	}
	for _, tc := range []struct {
		name, issuer string
		ok           bool
	}{
		{"the configured issuer", cfg.Issuer, true},
		{"another issuer", "https://evil.example.com/", false},
		{"a prefix of the issuer", cfg.Issuer[:len(cfg.Issuer)-1], false},
		{"no issuer", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := now
			got, err := clockVerifier(t, cfg, &n).Verify(mint(tc.issuer))
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, p, got)
				return
			}
			require.ErrorIs(t, err, ErrInvalidToken)
			if tc.issuer == "" {
				require.ErrorIs(t, err, jwt.ErrTokenRequiredClaimMissing)
			} else {
				require.ErrorIs(t, err, jwt.ErrTokenInvalidIssuer)
			}
		})
	}

	// With no issuer configured, iss is not checked.
	open := cfg
	open.Issuer = ""
	n := now
	_, err := clockVerifier(t, open, &n).Verify(mint("https://anyone.example.com/"))
	require.NoError(t, err)
}
