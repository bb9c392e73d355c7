package outbox

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxSourceBytes is the longest Source EventBridge accepts. The writer does
// not know the relay's configured source, so it budgets for the longest.
const MaxSourceBytes = 256

// EncodeDetail builds the detail JSON stored for c, as the relay will send
// it. A detail that, with the detail-type, the longest Source and the time,
// would exceed MaxBatchBytes (EventBridge parks nothing smaller; anything
// larger it refuses) becomes a claim-check detail instead: the same
// detail-type and envelope fields, the payload cut to the entity's
// identifying fields, and ClaimCheck pointing at the entity in the API. So
// every change is published, whatever its size. sc, when not nil, is the
// trace context the detail carries (traceparent, traceId, spanContext).
func EncodeDetail(c Change, envelopeID string, now time.Time, sc *SpanContext) (string, error) {
	d, err := BuildDetail(c, envelopeID, now)
	if err != nil {
		return "", err
	}
	if sc != nil {
		d.TraceParent, d.TraceID, d.SpanContext = sc.TraceParent(), sc.TraceID, sc
	}
	body, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("outbox: marshal detail: %w", err)
	}
	if fits(c.DetailType, len(body)) {
		return string(body), nil
	}
	d.Payload, err = identifyingPayload(d.Payload)
	if err != nil {
		return "", err
	}
	d.ClaimCheck = &ClaimCheck{Href: href(c), Reason: ClaimCheckTooLarge, Size: len(body)}
	small, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("outbox: marshal claim-check detail: %w", err)
	}
	return string(small), nil
}

// fits reports whether a detail of n bytes fits one PutEvents entry, counted
// as Entry.Size counts, whatever the Source.
func fits(detailType string, n int) bool {
	return n+len(detailType)+MaxSourceBytes+entryTimeBytes <= MaxBatchBytes
}

// identifyingFields are the fields a claim-check payload keeps: enough for a
// consumer to route and deduplicate on without fetching (which entity, in
// which collection and event, its name and state, when it changed), and
// each bounded in size by the API's validation.
var identifyingFields = map[string]bool{
	"id": true, "collectionId": true, "eventId": true, "name": true, "status": true, "configName": true,
	"createdTime": true, "updatedTime": true,
	// delete payloads
	"responseCode": true, "responseMessage": true, "timeStamp": true,
}

// maxIdentifyingValue drops any kept value longer than this, so a claim
// check is always small whatever was stored.
const maxIdentifyingValue = 1024

// identifyingPayload keeps, of {"action": {...}} (or a delete payload), the
// identifying fields: {"action": {"id": 7, "collectionId": 1, "eventId": 3, ...}}.
func identifyingPayload(payload json.RawMessage) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return json.RawMessage(`{}`), nil // not an object: nothing identifying to keep
	}
	out := map[string]json.RawMessage{}
	for k, v := range top {
		var entity map[string]json.RawMessage
		if err := json.Unmarshal(v, &entity); err == nil && entity != nil {
			kept := map[string]json.RawMessage{}
			for f, fv := range entity {
				if identifyingFields[f] && len(fv) <= maxIdentifyingValue {
					kept[f] = fv
				}
			}
			b, err := json.Marshal(kept)
			if err != nil {
				return nil, fmt.Errorf("outbox: claim-check payload: %w", err)
			}
			out[k] = b
			continue
		}
		if identifyingFields[k] && len(v) <= maxIdentifyingValue {
			out[k] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("outbox: claim-check payload: %w", err)
	}
	return b, nil
}

// href is c.Href, or the entity's API path derived from its detail type.
func href(c Change) string {
	if c.Href != "" {
		return c.Href
	}
	cid := strconv.FormatInt(c.CollectionID, 10)
	entity, _, _ := strings.Cut(strings.TrimPrefix(c.DetailType, DetailTypePrefix), "/")
	switch entity {
	case "collection":
		return "/v1/collections/" + url.PathEscape(c.EntityID)
	case "event":
		return "/v1/collections/" + cid + "/events/" + url.PathEscape(c.EntityID)
	case "action":
		return "/v1/collections/" + cid + "/actions/" + url.PathEscape(c.EntityID)
	case "notifications":
		// detail.id of a send is the notification name: its list, filtered.
		return "/v1/collections/" + cid + "/notifications?name=" + url.QueryEscape(c.EntityID)
	default:
		return "/v1/collections/" + cid
	}
}
