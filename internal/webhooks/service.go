package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/channels/webhookout"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/invalidate"
	"github.com/notificationservice/notificationservice/internal/outbox"
)

// Poster sends one signed POST; *webhookout.Client implements it.
type Poster interface {
	Send(ctx context.Context, m webhookout.Message) webhookout.Result
}

// Service is the endpoint registry. As every domain service, it trusts the
// HTTP edge to have authorized the caller for the collection, and takes the
// caller only to record it as the author of a change.
type Service struct {
	db     *gorm.DB
	outbox *outbox.Writer
	cfg    config.Webhooks
	box    box
	client Poster
	now    func() time.Time
	subs   *subscribers    // who wants lifecycle events (lifecycle.go)
	bus    *invalidate.Bus // nil: this instance's snapshot only
}

// New returns the registry on db, recording its changes with w and posting
// through client. now is its clock (time.Now when nil).
func New(db *gorm.DB, w *outbox.Writer, cfg config.Webhooks, client Poster, now func() time.Time) (*Service, error) {
	b, err := newBox(cfg.SecretKey)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, outbox: w, cfg: cfg, box: b, client: client, now: now, subs: newSubscribers(db, now)}, nil
}

// WithInvalidator announces every endpoint change on bus, so the subscriber
// snapshots of the other instances drop too, and subscribes this one's; it
// returns s. Without it a change drops this instance's snapshot only.
func (s *Service) WithInvalidator(bus *invalidate.Bus) *Service {
	s.bus = bus
	if bus != nil {
		bus.Subscribe(s.subs)
	}
	return s
}

// Create registers an endpoint in PENDING_VALIDATION, commits it with its
// webhook/create envelope, then sends the first HEALTH_CHECK (bounded by
// webhooks.validationTimeout) and answers with the state that left it in,
// and the secret, shown this once.
func (s *Service) Create(ctx context.Context, p auth.Principal, collectionID int64, in Input) (WithSecret, error) {
	if err := in.validate(s.cfg.AllowPrivateNetworks); err != nil {
		return WithSecret{}, err
	}
	secret, sealed, err := s.newSecret()
	if err != nil {
		return WithSecret{}, err
	}
	now := s.now().UnixMilli()
	types := in.EventTypes
	if types == nil {
		types = []string{}
	}
	e := Endpoint{
		CollectionID: collectionID, URL: in.URL, Description: in.Description, EventTypes: types,
		State: StatePendingValidation, Secret: sealed, Version: 1, CreatedBy: p.UserID, UpdatedBy: p.UserID,
		CreatedTime: now, UpdatedTime: now,
	}
	err = s.inTx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.WithContext(ctx).Table("collections").Where("id = ?", collectionID).Count(&n).Error; err != nil {
			return fmt.Errorf("webhooks: find collection %d: %w", collectionID, err)
		}
		if n == 0 {
			return collectionNotFound(collectionID)
		}
		if err := tx.WithContext(ctx).Create(&e).Error; err != nil {
			if errors.Is(err, gorm.ErrForeignKeyViolated) {
				return &apperr.Error{Kind: apperr.NotFound, Message: fmt.Sprintf("collection %d does not exist", collectionID), Err: err}
			}
			return fmt.Errorf("webhooks: insert: %w", err)
		}
		return s.record(ctx, tx, p, outbox.WebhookCreate, e, map[string]any{"webhook": e})
	})
	if err != nil {
		return WithSecret{}, err
	}
	e, err = s.check(ctx, p, e)
	if err != nil {
		return WithSecret{}, err
	}
	return WithSecret{Webhook: e, Secret: secret}, nil
}

// List returns one page of a collection's endpoints in id order.
func (s *Service) List(ctx context.Context, _ auth.Principal, collectionID int64, pg Page) ([]Endpoint, error) {
	out := []Endpoint{}
	err := s.db.WithContext(ctx).Where("collection_id = ? AND id > ?", collectionID, pg.After).
		Order("id").Limit(pg.Limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("webhooks: list: %w", err)
	}
	return out, nil
}

// Get returns endpoint id of collection collectionID.
func (s *Service) Get(ctx context.Context, _ auth.Principal, collectionID, id int64) (Endpoint, error) {
	return s.get(ctx, s.db, collectionID, id)
}

func (s *Service) get(ctx context.Context, db *gorm.DB, collectionID, id int64) (Endpoint, error) {
	var e Endpoint
	err := db.WithContext(ctx).Where("id = ? AND collection_id = ?", id, collectionID).Take(&e).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Endpoint{}, apperr.New(apperr.NotFound, "webhook %d does not exist in collection %d", id, collectionID)
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("webhooks: get %d: %w", id, err)
	}
	return e, nil
}

// Update applies patch. A new URL puts the endpoint back in
// PENDING_VALIDATION (it receives nothing meanwhile) and validates it before
// answering, as Create does.
func (s *Service) Update(ctx context.Context, p auth.Principal, collectionID, id int64, patch Patch) (Endpoint, error) {
	if err := patch.validate(s.cfg.AllowPrivateNetworks); err != nil {
		return Endpoint{}, err
	}
	var e Endpoint
	var urlChanged bool
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		old, err := s.get(ctx, tx, collectionID, id)
		if err != nil {
			return err
		}
		set := map[string]any{"updated_by": p.UserID, "updated_time": s.now().UnixMilli(), "version": gorm.Expr("version + 1")}
		if patch.URL != nil && *patch.URL != old.URL {
			urlChanged = true
			set["url"] = *patch.URL
			set["state"] = StatePendingValidation
		}
		if patch.Description != nil {
			set["description"] = *patch.Description
		}
		if patch.EventTypes != nil {
			types, _ := json.Marshal(*patch.EventTypes)
			if *patch.EventTypes == nil {
				types = []byte("[]")
			}
			set["event_types"] = string(types)
		}
		if err := tx.WithContext(ctx).Model(&Endpoint{}).Where("id = ?", id).Updates(set).Error; err != nil {
			return fmt.Errorf("webhooks: update %d: %w", id, err)
		}
		if e, err = s.get(ctx, tx, collectionID, id); err != nil {
			return err
		}
		return s.record(ctx, tx, p, outbox.WebhookUpdate, e, map[string]any{"webhook": e})
	})
	if err != nil || !urlChanged {
		return e, err
	}
	return s.check(ctx, p, e)
}

// Delete removes an endpoint, its pending messages and its attempt log.
func (s *Service) Delete(ctx context.Context, p auth.Principal, collectionID, id int64) (Deleted, error) {
	d := outbox.NewDeleted(DeletedCode, DeletedMessage, s.now())
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		e, err := s.get(ctx, tx, collectionID, id)
		if err != nil {
			return err
		}
		if err := tx.WithContext(ctx).Delete(&Endpoint{}, id).Error; err != nil {
			return fmt.Errorf("webhooks: delete %d: %w", id, err)
		}
		return s.record(ctx, tx, p, outbox.WebhookDelete, e, d)
	})
	if err != nil {
		return Deleted{}, err
	}
	return d, nil
}

// newSecret generates a signing secret and seals it for storage: the
// caller shows secret once and stores only sealed.
func (s *Service) newSecret() (secret, sealed string, err error) {
	if secret, err = webhookout.NewSecret(); err != nil {
		return "", "", err
	}
	if sealed, err = s.box.seal(secret); err != nil {
		return "", "", err
	}
	return secret, sealed, nil
}

// RotateSecret gives the endpoint a new secret and keeps the current one
// signing (beside the new) for webhooks.rotationOverlap, so a receiver can
// switch without dropping a message.
func (s *Service) RotateSecret(ctx context.Context, p auth.Principal, collectionID, id int64) (WithSecret, error) {
	secret, sealed, err := s.newSecret()
	if err != nil {
		return WithSecret{}, err
	}
	var e Endpoint
	err = s.inTx(ctx, func(tx *gorm.DB) error {
		old, err := s.get(ctx, tx, collectionID, id)
		if err != nil {
			return err
		}
		now := s.now()
		err = tx.WithContext(ctx).Model(&Endpoint{}).Where("id = ?", id).Updates(map[string]any{
			"secret": sealed, "previous_secret": old.Secret,
			"previous_secret_until": now.Add(s.cfg.RotationOverlap).UnixMilli(),
			"updated_by":            p.UserID, "updated_time": now.UnixMilli(), "version": gorm.Expr("version + 1"),
		}).Error
		if err != nil {
			return fmt.Errorf("webhooks: rotate %d: %w", id, err)
		}
		if e, err = s.get(ctx, tx, collectionID, id); err != nil {
			return err
		}
		return s.record(ctx, tx, p, outbox.WebhookUpdate, e, map[string]any{"webhook": e})
	})
	if err != nil {
		return WithSecret{}, err
	}
	return WithSecret{Webhook: e, Secret: secret}, nil
}

// Validate sends a HEALTH_CHECK now: success makes the endpoint ACTIVE
// (a DISABLED one too), failure leaves or puts it in PENDING_VALIDATION
// (a DISABLED one stays DISABLED); lastValidation says why.
func (s *Service) Validate(ctx context.Context, p auth.Principal, collectionID, id int64) (Endpoint, error) {
	e, err := s.get(ctx, s.db, collectionID, id)
	if err != nil {
		return Endpoint{}, err
	}
	return s.check(ctx, p, e)
}

// Attempts returns one page of the endpoint's attempts, oldest first.
func (s *Service) Attempts(ctx context.Context, _ auth.Principal, collectionID, id int64, pg Page) ([]Attempt, error) {
	if _, err := s.get(ctx, s.db, collectionID, id); err != nil {
		return nil, err
	}
	out := []Attempt{}
	err := s.db.WithContext(ctx).Where("endpoint_id = ? AND id > ?", id, pg.After).Order("id").Limit(pg.Limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("webhooks: attempts of %d: %w", id, err)
	}
	return out, nil
}

// check runs one HEALTH_CHECK against e and commits its outcome (state,
// lastValidation, and a webhook/update envelope).
func (s *Service) check(ctx context.Context, p auth.Principal, e Endpoint) (Endpoint, error) {
	v := s.healthCheck(ctx, e)
	state := StatePendingValidation
	switch {
	case v.OK:
		state = StateActive
	case e.State == StateDisabled:
		state = StateDisabled
	}
	err := s.inTx(ctx, func(tx *gorm.DB) error {
		set := map[string]any{
			"state": state, "last_validation": mustJSON(v), "updated_time": s.now().UnixMilli(),
			"version": gorm.Expr("version + 1"),
		}
		if v.OK {
			set["failing_since"] = 0
		}
		res := tx.WithContext(ctx).Model(&Endpoint{}).Where("id = ?", e.ID).Updates(set)
		if res.Error != nil {
			return fmt.Errorf("webhooks: record validation of %d: %w", e.ID, res.Error)
		}
		var err error
		if e, err = s.get(ctx, tx, e.CollectionID, e.ID); err != nil {
			return err
		}
		return s.record(ctx, tx, p, outbox.WebhookUpdate, e, map[string]any{"webhook": e})
	})
	return e, err
}

// healthCheck POSTs the HEALTH_CHECK event (seed 000's shape) and reports
// whether the endpoint echoed its validation string. The attempt is logged
// whatever happened.
func (s *Service) healthCheck(ctx context.Context, e Endpoint) Validation {
	start := s.now()
	v := Validation{Time: start.UnixMilli()}
	token, err := randomToken()
	if err != nil {
		v.Error = err.Error()
		return v
	}
	payload, _ := json.Marshal(map[string]string{"validation": token})
	ev := outbox.TypedEvent{
		ID: outbox.EventIDPrefix + uuid.NewString(), Type: outbox.TypeHealthCheck, Timestamp: start,
		CompanyID: strconv.FormatInt(e.CollectionID, 10), PayloadKey: "healthCheck", Payload: payload,
	}
	body, err := json.Marshal(ev)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	secrets, err := s.signingSecrets(e, start)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ValidationTimeout)
	defer cancel()
	res := s.client.Send(cctx, webhookout.Message{URL: e.URL, ID: ev.ID, Timestamp: start, Body: body, Secrets: secrets})
	v.StatusCode = res.StatusCode
	switch {
	case errors.Is(res.Err, context.DeadlineExceeded) || errors.Is(cctx.Err(), context.DeadlineExceeded):
		v.Error = fmt.Sprintf("timed out after %s", s.cfg.ValidationTimeout)
	case res.Err != nil:
		v.Error = res.Err.Error()
	case !echoed(res.Body, token):
		v.Error = fmt.Sprintf("answered %d without echoing the validation string (raw, or as {\"validation\": \"…\"})", res.StatusCode)
	default:
		v.OK = true
	}
	s.logAttempt(ctx, s.db, e.ID, ev.ID, ev.Type, start, res, v.Error)
	return v
}

// echoed reports whether body is the validation token, raw or as
// {"validation": token}.
func echoed(body []byte, token string) bool {
	if strings.TrimSpace(string(body)) == token {
		return true
	}
	var v struct {
		Validation string `json:"validation"`
	}
	return json.Unmarshal(body, &v) == nil && v.Validation == token
}

// logAttempt appends to the attempt log. A failure to log is not the
// attempt's failure; it is dropped rather than fail a delivery that happened.
func (s *Service) logAttempt(ctx context.Context, db *gorm.DB, endpointID int64, eventID, eventType string, start time.Time, res webhookout.Result, errText string) {
	_ = db.WithContext(ctx).Create(&Attempt{
		EndpointID: endpointID, EventID: eventID, EventType: eventType, Time: start.UnixMilli(),
		StatusCode: res.StatusCode, LatencyMs: res.Latency.Milliseconds(), Error: errText,
	}).Error
}

// signingSecrets returns the plaintext secrets that sign at now: the
// current, and the previous during its rotation overlap.
func (s *Service) signingSecrets(e Endpoint, now time.Time) ([]string, error) {
	cur, err := s.box.open(e.Secret)
	if err != nil {
		return nil, err
	}
	out := []string{cur}
	if e.PreviousSecret != "" && now.UnixMilli() < e.PreviousSecretUntil {
		prev, err := s.box.open(e.PreviousSecret)
		if err != nil {
			return nil, err
		}
		out = append(out, prev)
	}
	return out, nil
}

// inTx runs fn in a transaction and wakes the outbox readers after it
// commits. Errors that are not apperr errors are wrapped.
func (s *Service) inTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if err := s.db.WithContext(ctx).Transaction(fn); err != nil {
		if _, ok := apperr.As(err); ok {
			return err
		}
		return fmt.Errorf("webhooks: transaction: %w", err)
	}
	s.subs.drop()
	s.outbox.Committed()
	return nil
}

// record writes the envelope of a change to e in tx. Payloads are built
// from Endpoint, whose secrets are json:"-": no envelope carries one.
// Every change may change who wants lifecycle events: it is announced on
// the bus in tx too.
func (s *Service) record(ctx context.Context, tx *gorm.DB, p auth.Principal, detailType string, e Endpoint, payload any) error {
	if err := s.bus.Publish(ctx, tx, invalidate.Webhooks(e.CollectionID)); err != nil {
		return err
	}
	return s.outbox.Record(ctx, tx, outbox.Change{
		DetailType: detailType, EntityID: strconv.FormatInt(e.ID, 10), CollectionID: e.CollectionID,
		Payload: payload, Actor: p,
		Href: fmt.Sprintf("/v1/collections/%d/webhooks/%d", e.CollectionID, e.ID),
	})
}

func collectionNotFound(id int64) error {
	return apperr.New(apperr.NotFound, "collection %d does not exist", id)
}

func randomToken() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhooks: validation token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs reach here
	}
	return string(b)
}

// Target is an endpoint as the webhook channel (SendWebhookConfig) sends
// to it: the endpoint and the secrets that sign at the time asked, or
// Problem when it cannot be signed for.
type Target struct {
	Endpoint
	Secrets []string
	Problem string // why it cannot be sent to although ACTIVE ("" when it can)
}

// Targets returns the endpoints of collectionID (only endpoint id when id
// > 0), whatever their state, in id order, with their signing secrets at
// now. An endpoint whose secret does not decrypt is returned with Problem
// set rather than failing the others.
func (s *Service) Targets(ctx context.Context, collectionID, id int64, now time.Time) ([]Target, error) {
	q := s.db.WithContext(ctx).Where("collection_id = ?", collectionID)
	if id > 0 {
		q = q.Where("id = ?", id)
	}
	var eps []Endpoint
	if err := q.Order("id").Find(&eps).Error; err != nil {
		return nil, fmt.Errorf("webhooks: endpoints of %d: %w", collectionID, err)
	}
	out := make([]Target, len(eps))
	for i, e := range eps {
		out[i].Endpoint = e
		secrets, err := s.signingSecrets(e, now)
		if err != nil {
			out[i].Problem = err.Error()
			continue
		}
		out[i].Secrets = secrets
	}
	return out, nil
}

// LogAttempt adds a POST the webhook channel made to the endpoint's
// attempt log, as the sender's own are.
func (s *Service) LogAttempt(ctx context.Context, endpointID int64, eventID, eventType string, start time.Time, res webhookout.Result) {
	errText := ""
	if !res.OK() {
		errText = fmt.Sprint(res.Err)
	}
	s.logAttempt(ctx, s.db, endpointID, eventID, eventType, start, res, errText)
}
