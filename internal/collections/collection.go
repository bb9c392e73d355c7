// Package collections owns collections and the events inside them: the
// model, its validation, the SQL that stores it, and the service the REST API
// calls. Every mutation writes its EventBridge envelope to the outbox in the
// same transaction.
package collections

import (
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/condition"
	"github.com/notificationservice/notificationservice/internal/outbox"
	"github.com/notificationservice/notificationservice/internal/schedule"
)

// Statuses a collection or an event may have.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// Limits on free-text fields, in characters.
const (
	MaxNameLen        = 128
	MaxDescriptionLen = 1024
	// MaxFromNameLen is the limit on a default sender name, the same as on
	// an action's config.fromName.
	MaxFromNameLen = 256
	// MaxTenantLen is the limit on a collection's tenant, the same as on
	// the tenant header of a send.
	MaxTenantLen = 128
)

// Collection groups the events and actions of one product or tenant. The JSON
// names are the event catalogue's, plus the default sender.
type Collection struct {
	ID          int64  `json:"id" gorm:"primaryKey"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	// DefaultFromEmail and DefaultFromName are the sender of the
	// collection's email actions whose config has no fromEmail; the service's
	// channels.sendgrid sender applies when DefaultFromEmail is "" too.
	DefaultFromEmail string `json:"defaultFromEmail"`
	DefaultFromName  string `json:"defaultFromName"`
	// Timezone is the IANA zone recipients without a timezone of their own
	// are read in (quiet hours); UTC unless set.
	Timezone string `json:"timezone"`
	// QuietHours is the daily window in which the collection's deliveries
	// wait (null: none); an action may override it (config.quietHours).
	QuietHours *schedule.Window `json:"quietHours" gorm:"serializer:json"`
	// Tenant is the tenant the collection belongs to ("" for none): a send
	// whose tenant header names another tenant is refused (403 on the API,
	// dead-lettered on the queue).
	Tenant      string `json:"tenant"`
	Version     int64  `json:"-"`
	CreatedBy   string `json:"-"`
	UpdatedBy   string `json:"-"`
	CreatedTime int64  `json:"createdTime"`
	UpdatedTime int64  `json:"updatedTime"`
}

// TableName is the collections table.
func (Collection) TableName() string { return "collections" }

// Event is a named trigger inside a collection (USER_INVITEUSER); a
// notification of that name fires the event's actions. Field order follows
// the catalogue's event payload.
type Event struct {
	ID           int64  `json:"id" gorm:"primaryKey"`
	CollectionID int64  `json:"collectionId"`
	Name         string `json:"name"`
	Description  string `json:"description"`
	Status       string `json:"status"`
	// Condition is an expr-lang expression (docs/rules.md) that must be
	// true for a recipient to get any action of the event; it is checked
	// before the actions' own conditions. "" is none. Both fields are left
	// out when unset, so an event without them keeps the catalogue's shape.
	Condition string `json:"condition,omitempty"`
	// Required marks an event recipients cannot opt out of (password
	// reset, security alerts): their preferences do not apply to it.
	Required    bool   `json:"required,omitempty"`
	Version     int64  `json:"-"`
	CreatedBy   string `json:"-"`
	UpdatedBy   string `json:"-"`
	UpdatedTime int64  `json:"updatedTime"`
	CreatedTime int64  `json:"createdTime"`
}

// TableName is the events table.
func (Event) TableName() string { return "events" }

// Input is the body that creates an event. Status defaults to ACTIVE.
type Input struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	Condition   string `json:"condition"`
	Required    bool   `json:"required"`
}

// CollectionInput is the body that creates a collection: an Input's fields
// and the collection's default email sender ("": none). It repeats Input's
// fields rather than embed Input, because encoding/json would then name a
// mistyped field "Input.name" in the 400's details.
type CollectionInput struct {
	Name             string           `json:"name"`
	Description      string           `json:"description"`
	Status           string           `json:"status"`
	DefaultFromEmail string           `json:"defaultFromEmail"`
	DefaultFromName  string           `json:"defaultFromName"`
	Timezone         string           `json:"timezone"`   // "": UTC
	QuietHours       *schedule.Window `json:"quietHours"` // nil: none
	Tenant           string           `json:"tenant"`
}

// Patch changes the fields it sets and leaves the others alone. Condition
// and Required are an event's only: a collection's patch never sets them.
type Patch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Status      *string `json:"status"`
	Condition   *string `json:"condition"` // "" removes the condition
	Required    *bool   `json:"required"`
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool {
	return p.Name == nil && p.Description == nil && p.Status == nil && p.Condition == nil && p.Required == nil
}

// CollectionPatch is a collection's Patch: a Patch's fields (repeated, not
// embedded, as in CollectionInput) and the default sender; "" clears a field.
type CollectionPatch struct {
	Name             *string `json:"name"`
	Description      *string `json:"description"`
	Status           *string `json:"status"`
	DefaultFromEmail *string `json:"defaultFromEmail"`
	DefaultFromName  *string `json:"defaultFromName"`
	Timezone         *string `json:"timezone"` // "": UTC
	// QuietHours, when set, replaces the window; null clears it.
	QuietHours schedule.Optional `json:"quietHours"`
	Tenant     *string           `json:"tenant"`
}

// Empty reports whether the patch changes nothing.
func (p CollectionPatch) Empty() bool {
	return p.common().Empty() && p.DefaultFromEmail == nil && p.DefaultFromName == nil &&
		p.Timezone == nil && !p.QuietHours.Set && p.Tenant == nil
}

// common is the part of p that an event's Patch has too.
func (p CollectionPatch) common() Patch {
	return Patch{Name: p.Name, Description: p.Description, Status: p.Status}
}

// Deleted is the catalogue's delete payload: the body of a DELETE response
// and the payload of the matching delete envelope.
type Deleted = outbox.Deleted

// Delete payload codes and messages, as the catalogue shows them for events
// and by analogy for collections.
const (
	EventDeletedCode         = "NOEVDEL0000"
	EventDeletedMessage      = "Event is deleted successfully"
	CollectionDeletedCode    = "NOCODEL0000"
	CollectionDeletedMessage = "Collection is deleted successfully"
)

// Page asks for at most Limit rows with an id greater than After, in id
// order: a keyset page, stable while rows are added or removed.
type Page struct {
	Limit int
	After int64
}

// Filter narrows a list. Empty fields match everything; Name matches exactly.
type Filter struct {
	Status string
	Name   string
}

func (in Input) validate() error {
	var f apperr.Fields
	in.check(&f)
	return f.Err()
}

func (in Input) check(f *apperr.Fields) {
	checkName(f, in.Name)
	f.MaxLen("description", in.Description, MaxDescriptionLen)
	if in.Status != "" {
		f.OneOf("status", in.Status, StatusActive, StatusInactive)
	}
	checkCondition(f, in.Condition)
}

// checkCondition records why an event's condition does not compile (the
// expression's error and its line and column); "" is none.
func checkCondition(f *apperr.Fields, src string) {
	if src == "" {
		return
	}
	if _, err := condition.Compile(src); err != nil {
		f.Add("condition", "is not a valid condition: "+err.Error())
	}
}

func (in CollectionInput) validate() error {
	var f apperr.Fields
	Input{Name: in.Name, Description: in.Description, Status: in.Status}.check(&f)
	checkSender(&f, in.DefaultFromEmail, in.DefaultFromName)
	checkTimezone(&f, in.Timezone)
	if in.QuietHours != nil {
		checkWindow(&f, *in.QuietHours)
	}
	checkTenant(&f, in.Tenant)
	return f.Err()
}

func (p Patch) validate() error {
	if p.Empty() {
		return nothingToChange("name, description, status, condition, required")
	}
	var f apperr.Fields
	p.check(&f)
	return f.Err()
}

func (p Patch) check(f *apperr.Fields) {
	if p.Name != nil {
		checkName(f, *p.Name)
	}
	if p.Description != nil {
		f.MaxLen("description", *p.Description, MaxDescriptionLen)
	}
	if p.Status != nil {
		f.OneOf("status", *p.Status, StatusActive, StatusInactive)
	}
	if p.Condition != nil {
		checkCondition(f, *p.Condition)
	}
}

// validate checks the fields the patch sets. Whether the sender it leaves
// behind is whole (a name needs an email) depends on the stored row too;
// UpdateCollection checks that with senderComplete.
func (p CollectionPatch) validate() error {
	if p.Empty() {
		return nothingToChange("name, description, status, defaultFromEmail, defaultFromName, timezone, quietHours, tenant")
	}
	var f apperr.Fields
	p.common().check(&f)
	if p.DefaultFromEmail != nil && *p.DefaultFromEmail != "" {
		f.Email("defaultFromEmail", *p.DefaultFromEmail)
	}
	if p.DefaultFromName != nil {
		f.MaxLen("defaultFromName", *p.DefaultFromName, MaxFromNameLen)
	}
	if p.Timezone != nil {
		checkTimezone(&f, *p.Timezone)
	}
	if p.QuietHours.Window != nil {
		checkWindow(&f, *p.QuietHours.Window)
	}
	if p.Tenant != nil {
		checkTenant(&f, *p.Tenant)
	}
	return f.Err()
}

// checkTenant checks a collection's tenant: "" (none) or a name as a send's
// tenant header would carry it, which is compared exactly.
func checkTenant(f *apperr.Fields, tenant string) {
	if !f.Text("tenant", tenant) {
		return
	}
	if strings.TrimSpace(tenant) != tenant {
		f.Add("tenant", "must not start or end with whitespace")
	}
	f.MaxLen("tenant", tenant, MaxTenantLen)
}

func nothingToChange(fields string) error {
	return apperr.Invalid("the patch changes nothing",
		apperr.Detail{Field: "body", Reason: "must set at least one of " + fields})
}

// checkSender checks a default sender: empty, or a bare address with an
// optional name. A name alone is refused rather than ignored: the
// dispatcher takes the sender as a pair, so it would never be used.
func checkSender(f *apperr.Fields, email, name string) {
	if email != "" {
		f.Email("defaultFromEmail", email)
	}
	senderComplete(f, email, name)
	f.MaxLen("defaultFromName", name, MaxFromNameLen)
}

// senderComplete records a sender name without an address.
func senderComplete(f *apperr.Fields, email, name string) {
	if email == "" && name != "" {
		f.Add("defaultFromEmail", "is required when defaultFromName is set")
	}
}

// checkTimezone checks a default zone: empty (UTC) or an IANA name.
func checkTimezone(f *apperr.Fields, zone string) {
	if zone == "" {
		return
	}
	if _, err := schedule.LoadZone(zone); err != nil {
		f.Add("timezone", "must be an IANA time zone such as Europe/Paris or UTC")
	}
}

// checkWindow checks a quiet-hours window.
func checkWindow(f *apperr.Fields, w schedule.Window) {
	for _, e := range w.Validate() {
		f.Add("quietHours."+e.Field, e.Reason)
	}
}

func (fl Filter) validate() error {
	var f apperr.Fields
	if fl.Status != "" {
		f.OneOf("status", fl.Status, StatusActive, StatusInactive)
	}
	f.MaxLen("name", fl.Name, MaxNameLen)
	return f.Err()
}

// checkName requires a name that is not blank, fits the column limit, and
// has no surrounding whitespace: notifications look events up by exact name,
// so " USER_INVITE" would be a trap nobody could see in a listing.
func checkName(f *apperr.Fields, name string) {
	if strings.TrimSpace(name) == "" {
		f.Add("name", "is required")
		return
	}
	if strings.TrimSpace(name) != name {
		f.Add("name", "must not start or end with whitespace")
	}
	f.MaxLen("name", name, MaxNameLen)
}
