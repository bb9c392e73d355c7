// Package collections owns collections and the events inside them: the
// model, its validation, the SQL that stores it, and the service the REST API
// calls. Every mutation writes its EventBridge envelope to the outbox in the
// same transaction.
package collections

import (
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
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
)

// Collection groups the events and actions of one product or tenant. The JSON
// names are the event catalogue's.
type Collection struct {
	ID          int64  `json:"id" gorm:"primaryKey"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
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
	Version      int64  `json:"-"`
	CreatedBy    string `json:"-"`
	UpdatedBy    string `json:"-"`
	UpdatedTime  int64  `json:"updatedTime"`
	CreatedTime  int64  `json:"createdTime"`
}

// TableName is the events table.
func (Event) TableName() string { return "events" }

// Input is the body that creates a collection or an event. Status defaults
// to ACTIVE.
type Input struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
}

// Patch changes the fields it sets and leaves the others alone.
type Patch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Status      *string `json:"status"`
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool { return p.Name == nil && p.Description == nil && p.Status == nil }

// Deleted is the catalogue's delete payload: the body of a DELETE response
// and the payload of the matching delete envelope.
type Deleted struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	TimeStamp       string `json:"timeStamp"`
}

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
	checkName(&f, in.Name)
	f.MaxLen("description", in.Description, MaxDescriptionLen)
	if in.Status != "" {
		f.OneOf("status", in.Status, StatusActive, StatusInactive)
	}
	return f.Err()
}

func (p Patch) validate() error {
	if p.Empty() {
		return apperr.Invalid("the patch changes nothing",
			apperr.Detail{Field: "body", Reason: "must set at least one of name, description, status"})
	}
	var f apperr.Fields
	if p.Name != nil {
		checkName(&f, *p.Name)
	}
	if p.Description != nil {
		f.MaxLen("description", *p.Description, MaxDescriptionLen)
	}
	if p.Status != nil {
		f.OneOf("status", *p.Status, StatusActive, StatusInactive)
	}
	return f.Err()
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
