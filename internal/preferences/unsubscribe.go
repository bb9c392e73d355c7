package preferences

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/dispatch"
	"github.com/notificationservice/notificationservice/internal/jsonenc"
	"github.com/notificationservice/notificationservice/internal/message"
	"github.com/notificationservice/notificationservice/internal/render"
)

// unsubscribeAudience is the aud of every unsubscribe token. The tokens
// carry no sub either, so a bearer-token verifier refuses them even where
// the keys were derived from its secret.
const unsubscribeAudience = "notificationservice/unsubscribe"

// linkClaims is an unsubscribe token's body: whose preferences (collection,
// recipient key) and what to opt out of (the event, by id, else a channel).
type linkClaims struct {
	jwt.RegisteredClaims
	Collection int64  `json:"col"`
	Recipient  string `json:"rcp"`
	Event      int64  `json:"evt,omitempty"`
	Channel    string `json:"chn,omitempty"`
}

// Target is what one unsubscribe link opts out of.
type Target struct {
	CollectionID int64
	RecipientKey string
	EventID      int64  // 0: the link is for Channel
	EventName    string // filled by Unsubscribes.Target, "" when the event no longer exists
	Channel      string
}

// Links makes and reads the signed, expiring one-click unsubscribe links.
type Links struct {
	base, mailto string
	ttl          time.Duration
	key          []byte
	keys         jwt.VerificationKeySet
	now          func() time.Time
}

// NewLinks returns the links of cfg. Without a signing key of its own it
// derives one from the JWT secret (and the previous one from the previous
// secret), so they rotate together; serviceAddr (http.addr) is the base URL
// when cfg names none.
func NewLinks(cfg config.Unsubscribe, a config.Auth, serviceAddr string, now func() time.Time) *Links {
	if now == nil {
		now = time.Now
	}
	key, prev := cfg.SigningKey, cfg.PreviousSigningKey
	if key == "" {
		key, prev = derive(a.HMACSecret), derive(a.PreviousHMACSecret)
	}
	base := cfg.BaseURL
	if base == "" {
		base = "http://" + ownAddress(serviceAddr)
	}
	l := &Links{base: strings.TrimRight(base, "/"), mailto: cfg.Mailto, ttl: cfg.TTL, key: []byte(key), now: now}
	l.keys.Keys = []jwt.VerificationKey{l.key}
	if prev != "" {
		l.keys.Keys = append(l.keys.Keys, []byte(prev))
	}
	return l
}

// ownAddress is http.addr as a link can reach it: a listener on every
// interface (":8080", "0.0.0.0:8080") is reached on the loopback.
func ownAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// derive makes a signing key from a secret of another use, so one leaked
// token kind never verifies as the other.
func derive(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("notificationservice unsubscribe link key\x00" + secret))
	return string(sum[:])
}

// Link is the one-click unsubscribe link of an email of event eventID to
// rc (delivery.Unsubscribes): it opts the recipient's key (its id, else
// its first To address) out of the event.
func (l *Links) Link(collectionID, eventID int64, rc dispatch.Recipient) (render.Unsubscribe, error) {
	key := Key(rc.ID)
	if key == "" {
		if to := rc.To(); len(to) > 0 {
			key = Key(to[0].Email)
		}
	}
	if key == "" {
		return render.Unsubscribe{}, nil
	}
	tok, err := l.Token(Target{CollectionID: collectionID, RecipientKey: key, EventID: eventID, Channel: message.Email})
	if err != nil {
		return render.Unsubscribe{}, err
	}
	return render.Unsubscribe{URL: l.URL(tok), Mailto: l.mailto}, nil
}

// URL is the link of token.
func (l *Links) URL(token string) string { return l.base + "/unsubscribe/" + token }

// Token signs t, valid for the configured TTL: an HS256 JWT of linkClaims.
//
// The header and claims are written here and signed with the library's
// HS256, not through jwt.Token.SignedString, which marshals a header map
// and the claims by reflection for every email sent: 36 allocations and
// about 5 µs a link, a fifth of a sender's CPU in the REST send (issue 17,
// docs/benchmarks.md). The bytes are the library's own, claim for claim
// and in its order (TestLinkTokensAreTheLibrarys), and Parse reads them
// with the library.
func (l *Links) Token(t Target) (string, error) {
	now := l.now()
	claims := make([]byte, 0, 128+len(t.RecipientKey)+len(t.Channel))
	claims = append(claims, `{"aud":["`+unsubscribeAudience+`"],"exp":`...)
	claims = strconv.AppendInt(claims, jwt.NewNumericDate(now.Add(l.ttl)).Unix(), 10)
	claims = append(claims, `,"iat":`...)
	claims = strconv.AppendInt(claims, jwt.NewNumericDate(now).Unix(), 10)
	claims = append(claims, `,"col":`...)
	claims = strconv.AppendInt(claims, t.CollectionID, 10)
	claims = append(claims, `,"rcp":`...)
	claims = jsonenc.AppendString(claims, t.RecipientKey)
	if t.EventID != 0 {
		claims = append(claims, `,"evt":`...)
		claims = strconv.AppendInt(claims, t.EventID, 10)
	}
	if t.Channel != "" {
		claims = append(claims, `,"chn":`...)
		claims = jsonenc.AppendString(claims, t.Channel)
	}
	claims = append(claims, '}')

	enc := base64.RawURLEncoding
	tok := make([]byte, 0, len(linkHeader)+2+enc.EncodedLen(len(claims))+enc.EncodedLen(sha256.Size))
	tok = append(tok, linkHeader...)
	tok = append(tok, '.')
	tok = enc.AppendEncode(tok, claims)
	sig, err := jwt.SigningMethodHS256.Sign(string(tok), l.key)
	if err != nil {
		return "", fmt.Errorf("preferences: sign unsubscribe token: %w", err)
	}
	tok = append(tok, '.')
	return string(enc.AppendEncode(tok, sig)), nil
}

// linkHeader is the encoded header of every unsubscribe token, as
// jwt.Token.SigningString writes {"alg":"HS256","typ":"JWT"}.
var linkHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// ErrBadLink is a token that is forged, malformed or expired.
var ErrBadLink = errors.New("preferences: invalid unsubscribe link")

// Parse verifies token and returns what it opts out of.
func (l *Links) Parse(token string) (Target, error) {
	var c linkClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return l.keys, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithAudience(unsubscribeAudience),
		jwt.WithTimeFunc(l.now))
	if err != nil {
		return Target{}, badLink(fmt.Errorf("%w: %w", ErrBadLink, err))
	}
	if c.Collection <= 0 || c.Recipient == "" || (c.Event == 0 && c.Channel == "") {
		return Target{}, badLink(ErrBadLink)
	}
	return Target{CollectionID: c.Collection, RecipientKey: c.Recipient, EventID: c.Event, Channel: c.Channel}, nil
}

func badLink(err error) error {
	return &apperr.Error{Kind: apperr.InvalidArgument, Message: "this unsubscribe link is invalid or has expired; nothing was changed",
		Details: []apperr.Detail{{Field: "token", Reason: "is forged, malformed or expired"}}, Err: err}
}

// Unsubscribes serves the public unsubscribe routes: it reads a link's
// target and opts the recipient out.
type Unsubscribes struct {
	links *Links
	svc   *Service
	db    *gorm.DB
}

// NewUnsubscribes returns the unsubscribe routes' service.
func NewUnsubscribes(links *Links, svc *Service, db *gorm.DB) *Unsubscribes {
	return &Unsubscribes{links: links, svc: svc, db: db}
}

// Target verifies token and names its event; it changes nothing (the GET
// confirmation page: link scanners follow GETs).
func (u *Unsubscribes) Target(ctx context.Context, token string) (Target, error) {
	t, err := u.links.Parse(token)
	if err != nil {
		return Target{}, err
	}
	if t.EventID != 0 {
		var names []string
		err := u.db.WithContext(ctx).Table("events").Where("id = ? AND collection_id = ?", t.EventID, t.CollectionID).
			Limit(1).Pluck("name", &names).Error
		if err != nil {
			return Target{}, fmt.Errorf("preferences: event of an unsubscribe link: %w", err)
		}
		if len(names) > 0 {
			t.EventName = names[0]
		}
	}
	return t, nil
}

// Unsubscribe verifies token and opts its recipient out of its event, or,
// when the event no longer exists (or the link is for a channel), of its
// channel: the recipient asked for no more of these emails.
func (u *Unsubscribes) Unsubscribe(ctx context.Context, token string) (Target, error) {
	t, err := u.Target(ctx, token)
	if err != nil {
		return Target{}, err
	}
	ch := t.Channel
	if ch == "" {
		ch = message.Email
	}
	if _, err := u.svc.OptOut(ctx, t.CollectionID, t.RecipientKey, t.EventName, ch); err != nil {
		return Target{}, err
	}
	return t, nil
}
