// Package suppressions owns a collection's suppression list: the addresses
// it must not send to on a channel, because the provider reported a hard
// bounce, a spam report or a STOP (added automatically, through the status
// webhooks and the delivery workers), or because an admin added them. It
// owns the suppressions table; every change records its envelope through
// the outbox in the same transaction. Planning reads the list once per
// batch (Service.Find) and skips a suppressed recipient as "suppressed".
package suppressions

import (
	"regexp"
	"strings"

	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/message"
)

// Sources: what put an address on the list.
const (
	SourceSendGridBounce     = "sendgrid_bounce"     // a hard bounce (SendGrid event bounce, type bounce)
	SourceSendGridSpamReport = "sendgrid_spamreport" // the recipient marked a message as spam
	SourceTwilioStop         = "twilio_stop"         // Twilio error 21610: the recipient replied STOP
	SourceAPI                = "api"                 // an admin, through POST …/suppressions
)

// Sources lists every source, for validation and metrics.
func Sources() []string {
	return []string{SourceSendGridBounce, SourceSendGridSpamReport, SourceTwilioStop, SourceAPI}
}

// Limits on fields.
const (
	MaxReasonLen  = 1000
	MaxAddressLen = 4096 // a push token is the longest address
)

// Suppression is one entry of a collection's list, as the API shows it.
type Suppression struct {
	ID           int64  `json:"id" gorm:"primaryKey"`
	CollectionID int64  `json:"collectionId"`
	Address      string `json:"address"`
	Channel      string `json:"channel"`
	Reason       string `json:"reason"`
	Source       string `json:"source"`
	CreatedBy    string `json:"createdBy"` // the admin's user id, or the provider (sendgrid, twilio)
	CreatedTime  int64  `json:"createdTime"`
}

// TableName is the suppressions table.
func (Suppression) TableName() string { return "suppressions" }

// Input is the body of POST …/suppressions.
type Input struct {
	Address string `json:"address"`
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
}

// Entry is an automatic suppression: a provider's report on a delivery of
// collection CollectionID. Who is the provider.
type Entry struct {
	CollectionID int64
	Channel      string
	Address      string
	Reason       string
	Source       string
	Who          string
}

// Key names one address on one channel of one collection, as a recipient
// gave it: Find normalizes it.
type Key struct {
	CollectionID int64
	Channel      string
	Address      string
}

// Page is one page of a list: at most Limit rows after id After.
type Page struct {
	Limit int
	After int64
}

// Deleted is the DELETE answer: the catalogue's delete shape and the
// entries it lifted.
type Deleted struct {
	ResponseCode    string        `json:"responseCode"`
	ResponseMessage string        `json:"responseMessage"`
	TimeStamp       string        `json:"timeStamp"`
	Suppressions    []Suppression `json:"suppressions"`
}

// DeletedCode and DeletedMessage are the DELETE answer's.
const (
	DeletedCode    = "NOSPDEL0000"
	DeletedMessage = "Suppression lifted"
)

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// Normalize is the form an address is stored and looked up in: emails
// lower-cased (mailbox providers treat them so, and a bounce reports the
// address in the provider's case), every address trimmed of surrounding
// space; phones and push tokens otherwise as given.
func Normalize(channel, address string) string {
	a := strings.TrimSpace(address)
	if channel == message.Email {
		a = strings.ToLower(a)
	}
	return a
}

// validate checks in and returns it normalized.
func (in Input) validate() (Input, error) {
	var f apperr.Fields
	in.Channel = strings.TrimSpace(in.Channel)
	if f.Required("channel", in.Channel) {
		f.OneOf("channel", in.Channel, message.Email, message.SMS, message.Push)
	}
	okText := f.Text("address", in.Address)
	in.Address = Normalize(in.Channel, in.Address)
	if okText && f.Required("address", in.Address) {
		switch in.Channel {
		case message.Email:
			f.Email("address", in.Address)
		case message.SMS:
			if !e164.MatchString(in.Address) {
				f.Add("address", "must be an E.164 phone number such as +14155550100")
			}
		case message.Push:
			f.MaxLen("address", in.Address, MaxAddressLen)
		}
	}
	if f.Text("reason", in.Reason) {
		f.MaxLen("reason", in.Reason, MaxReasonLen)
	}
	return in, f.Err()
}
