package auth

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/config"
)

// clockVerifier is a Verifier whose clock the test moves.
func clockVerifier(t *testing.T, cfg config.Auth, now *time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(context.Background(), cfg)
	require.NoError(t, err)
	v.now = func() time.Time { return *now }
	return v
}

func TestVerifiedTokensAreCachedForAMinuteAtMost(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Auth
	now := time.Unix(1_700_000_000, 0)
	v := clockVerifier(t, cfg, &now)
	p := Principal{UserID: "1", Roles: []string{RoleAdmin}, Collections: []int64{5}, Channel: "CSR"}
	tok, err := Mint(cfg, p, time.Hour, now)
	require.NoError(t, err)

	got, err := v.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, p, got)

	// The key changes (a rotated secret, a key withdrawn from the JWKS): the
	// cached token is still trusted, but for verifiedTTL at most.
	v.secret = []byte("another-secret-another-secret-0123")
	now = now.Add(verifiedTTL - time.Second)
	got, err = v.Verify(tok)
	require.NoError(t, err, "served from the cache")
	require.Equal(t, p, got)
	got.Roles[0] = RoleSuperAdmin // callers cannot change what the cache holds
	got, err = v.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, p, got)

	now = now.Add(time.Second)
	_, err = v.Verify(tok)
	require.ErrorIs(t, err, ErrInvalidToken, "verified again after verifiedTTL")
}

func TestCachedTokensStillExpire(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Auth
	now := time.Unix(1_700_000_000, 0)
	v := clockVerifier(t, cfg, &now)
	tok, err := Mint(cfg, Principal{UserID: "1", Roles: []string{RoleAdmin}}, 10*time.Second, now)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.NoError(t, err)

	now = now.Add(10 * time.Second) // at exp (no leeway by default), inside verifiedTTL
	_, err = v.Verify(tok)
	require.ErrorIs(t, err, ErrInvalidToken)
}

func TestATamperedTokenIsNotServedFromTheCache(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Auth
	now := time.Unix(1_700_000_000, 0)
	v := clockVerifier(t, cfg, &now)
	tok, err := Mint(cfg, Principal{UserID: "1", Roles: []string{RoleViewer}}, time.Hour, now)
	require.NoError(t, err)
	_, err = v.Verify(tok)
	require.NoError(t, err)
	// Change a character inside the signature (the last one may carry only
	// padding bits).
	i := len(tok) - 5
	flipped := byte('A')
	if tok[i] == 'A' {
		flipped = 'B'
	}
	_, err = v.Verify(tok[:i] + string(flipped) + tok[i+1:])
	require.ErrorIs(t, err, ErrInvalidToken)
}

func TestTheCacheIsBounded(t *testing.T) {
	t.Parallel()
	cfg := config.Default().Auth
	now := time.Unix(1_700_000_000, 0)
	v := clockVerifier(t, cfg, &now)
	for i := range verifiedMax + 10 {
		tok, err := Mint(cfg, Principal{UserID: strconv.Itoa(i)}, time.Hour, now)
		require.NoError(t, err)
		_, err = v.Verify(tok)
		require.NoError(t, err)
	}
	require.LessOrEqual(t, len(v.cache.m), verifiedMax)
}

// BenchmarkVerify is the cost of authenticating a request: the first time a
// token is seen (signature and claims) and every later time (the cache).
func BenchmarkVerify(b *testing.B) {
	cfg := config.Default().Auth
	v, err := NewVerifier(context.Background(), cfg)
	require.NoError(b, err)
	tok, err := Mint(cfg, Principal{UserID: "1", Roles: []string{RoleAdmin}, Collections: []int64{5}, Channel: "CSR"}, time.Hour, time.Now())
	require.NoError(b, err)
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			clear(v.cache.m)
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
