// Package auth verifies and mints the JWT bearer tokens the API accepts and
// answers what the caller they describe may do.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/notificationservice/notificationservice/internal/config"
)

// Roles a token may carry.
const (
	RoleSuperAdmin = "ROLE_SUPER_ADMIN" // everything, every collection
	RoleAdmin      = "ROLE_ADMIN"       // manage (and read, and send for) its collections
	RoleViewer     = "ROLE_VIEWER"      // read its collections
	RoleSender     = "ROLE_SENDER"      // send notifications for its collections, nothing else
)

// KnownRoles lists the roles in order of power.
var KnownRoles = []string{RoleSuperAdmin, RoleAdmin, RoleViewer, RoleSender}

// Principal is the authenticated caller. Every mutation records it.
type Principal struct {
	UserID      string
	Roles       []string
	Channel     string
	Collections []int64
	// OnBehalfOf is the user a super admin acts for; 0 when acting for itself.
	OnBehalfOf int64
}

// Has reports whether p carries role.
func (p Principal) Has(role string) bool { return slices.Contains(p.Roles, role) }

// SuperAdmin reports whether p may do everything.
func (p Principal) SuperAdmin() bool { return p.Has(RoleSuperAdmin) }

func (p Principal) owns(collectionID int64) bool { return slices.Contains(p.Collections, collectionID) }

// CanRead reports whether p may read collection collectionID and what is in it.
func (p Principal) CanRead(collectionID int64) bool {
	return p.SuperAdmin() || ((p.Has(RoleAdmin) || p.Has(RoleViewer)) && p.owns(collectionID))
}

// CanManage reports whether p may change collection collectionID and what is in it.
func (p Principal) CanManage(collectionID int64) bool {
	return p.SuperAdmin() || (p.Has(RoleAdmin) && p.owns(collectionID))
}

// CanSend reports whether p may send notifications through collectionID.
func (p Principal) CanSend(collectionID int64) bool {
	return p.SuperAdmin() || ((p.Has(RoleAdmin) || p.Has(RoleSender)) && p.owns(collectionID))
}

// Claims is the token body: the registered claims (sub is the user id) and
// the service's own.
type Claims struct {
	jwt.RegisteredClaims
	Roles       []string `json:"roles"`
	Channel     string   `json:"channel,omitempty"`
	Collections []int64  `json:"collections,omitempty"`
}

// Errors Verify returns; all of them mean 401.
var (
	ErrMissingToken = errors.New("auth: missing bearer token")
	ErrInvalidToken = errors.New("auth: invalid token")
)

// Verifier checks bearer tokens: HS256 with the configured secret and, when a
// JWKS URL is configured, RS256/ES256 with the keys it publishes.
type Verifier struct {
	secret []byte
	// previous is auth.previousHMACSecret: accepted, never minted with, while
	// the secret is rotated.
	previous []byte
	jwks     keyfunc.Keyfunc
	issuer   string
	leeway   time.Duration
	now      func() time.Time
	cache    *verified
}

// NewVerifier builds a Verifier. With a JWKS URL it fetches the key set once
// and then refreshes it in the background until ctx ends.
func NewVerifier(ctx context.Context, cfg config.Auth) (*Verifier, error) {
	v := &Verifier{secret: []byte(cfg.HMACSecret), issuer: cfg.Issuer, leeway: cfg.Leeway, now: time.Now, cache: newVerified()}
	if cfg.PreviousHMACSecret != "" {
		v.previous = []byte(cfg.PreviousHMACSecret)
	}
	if cfg.JWKSURL != "" {
		k, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
		if err != nil {
			return nil, fmt.Errorf("auth: jwks %s: %w", cfg.JWKSURL, err)
		}
		v.jwks = k
	}
	return v, nil
}

func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(v.secret) == 0 {
			return nil, errors.New("HMAC tokens are not accepted")
		}
		if v.previous != nil {
			return jwt.VerificationKeySet{Keys: []jwt.VerificationKey{v.secret, v.previous}}, nil
		}
		return v.secret, nil
	default:
		if v.jwks == nil {
			return nil, errors.New("asymmetric tokens need auth.jwksURL")
		}
		return v.jwks.Keyfunc(t)
	}
}

// Verify parses a raw token and returns the principal it names. A token
// verified within the last minute and not yet expired is answered from a
// cache (see verified).
func (v *Verifier) Verify(raw string) (Principal, error) {
	if raw == "" {
		return Principal{}, ErrMissingToken
	}
	now := v.now()
	if p, ok := v.cache.get(raw, now); ok {
		return p, nil
	}
	var c Claims
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "RS256", "ES256"}),
		jwt.WithExpirationRequired(),
		// auth.leeway (default 0): a token is accepted until exp+leeway.
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if _, err := jwt.ParseWithClaims(raw, &c, v.key, opts...); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	p := Principal{UserID: c.Subject, Roles: c.Roles, Channel: c.Channel, Collections: c.Collections}
	v.cache.put(raw, p, c.ExpiresAt.Time, now)
	return p, nil
}

// BearerToken extracts the token from an Authorization header value.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Mint signs an HS256 token for p, valid for ttl. It is for local use and
// tests; production tokens come from the identity provider.
func Mint(cfg config.Auth, p Principal, ttl time.Duration, now time.Time) (string, error) {
	if len(cfg.HMACSecret) == 0 {
		return "", errors.New("auth: no HMAC secret configured")
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   p.UserID,
			Issuer:    cfg.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Roles:       p.Roles,
		Channel:     p.Channel,
		Collections: p.Collections,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(cfg.HMACSecret))
}
