package macros

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// SMS encodings.
const (
	GSM7 = "GSM-7"
	UCS2 = "UCS-2"
)

// Segment sizes (3GPP TS 23.038/23.040): one segment carries 160 GSM-7
// septets or 70 UCS-2 units; a concatenated message loses 7 septets / 3 units
// per segment to the user-data header.
const (
	gsmSingle  = 160
	gsmMulti   = 153
	ucs2Single = 70
	ucs2Multi  = 67
)

// gsmBasic is the GSM 03.38 default alphabet; gsmExtended the characters
// reached through the escape (each costs two septets).
var (
	gsmBasic = runeSet("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
	gsmExtended = runeSet("\f^{}\\[~]|€")
)

func runeSet(s string) map[rune]bool {
	m := make(map[rune]bool, utf8.RuneCountInString(s))
	for _, r := range s {
		m[r] = true
	}
	return m
}

// SMSInfo describes how a body travels as SMS.
type SMSInfo struct {
	Encoding   string `json:"encoding"`   // GSM-7 or UCS-2
	Characters int    `json:"characters"` // Unicode code points
	Units      int    `json:"units"`      // GSM-7 septets or UTF-16 code units
	Segments   int    `json:"segments"`   // 0 for an empty body
}

// SMS returns the encoding and segment count of body. A body with any
// character outside the GSM-7 alphabet (an emoji, a curly quote, Cyrillic)
// is sent as UCS-2. A segment boundary never splits an escaped GSM-7
// character or a UTF-16 surrogate pair, as handsets and carriers do.
func SMS(body string) SMSInfo {
	info := SMSInfo{Encoding: GSM7, Characters: utf8.RuneCountInString(body)}
	single, multi := gsmSingle, gsmMulti
	cost := gsmCost
	if !isGSM7(body) {
		info.Encoding = UCS2
		single, multi = ucs2Single, ucs2Multi
		cost = utf16Len
	}
	costs := make([]int, 0, info.Characters)
	for _, r := range body {
		costs = append(costs, cost(r))
	}
	for _, c := range costs {
		info.Units += c
	}
	switch {
	case info.Units == 0:
		info.Segments = 0
	case info.Units <= single:
		info.Segments = 1
	default:
		// Fill segments greedily without splitting a character.
		used := 0
		info.Segments = 1
		for _, c := range costs {
			if used+c > multi {
				info.Segments++
				used = 0
			}
			used += c
		}
	}
	return info
}

func isGSM7(s string) bool {
	for _, r := range s {
		if !gsmBasic[r] && !gsmExtended[r] {
			return false
		}
	}
	return true
}

func gsmCost(r rune) int {
	if gsmExtended[r] {
		return 2
	}
	return 1
}

func utf16Len(r rune) int {
	if r >= 0x10000 && r <= utf8.MaxRune {
		return 2
	}
	return 1
}

// LimitError is rendered content too large or empty for its channel, a
// render that went over its RenderLimits, or a template refused before it is
// stored. It is permanent: the same content fails the same way on every
// attempt.
type LimitError struct {
	What   string // WhatSMS, WhatPush, WhatRender or WhatTemplate
	Limit  int
	Actual int
	Reason string
}

// What a LimitError is about.
const (
	WhatSMS      = "sms"
	WhatPush     = "push"
	WhatRender   = "render"   // a render went over its RenderLimits
	WhatTemplate = "template" // a template refused by Check
)

// ErrRenderLimit matches (errors.Is) every render that stopped at one of its
// RenderLimits. Its text is the prefix of the delivery reason.
var ErrRenderLimit = errors.New("render_limit")

func (e *LimitError) Error() string {
	if e.What == WhatRender {
		return ErrRenderLimit.Error() + ": " + e.Reason
	}
	return "macros: " + e.What + ": " + e.Reason
}

// Is makes errors.Is(err, ErrRenderLimit) true for a render limit.
func (e *LimitError) Is(target error) bool { return target == ErrRenderLimit && e.What == WhatRender }

// CheckSMS returns body's SMSInfo and an error when the body is empty or
// needs more than maxSegments segments (maxSegments <= 0: no limit).
func CheckSMS(body string, maxSegments int) (SMSInfo, error) {
	info := SMS(body)
	if info.Segments == 0 {
		return info, &LimitError{What: WhatSMS, Reason: "body is empty"}
	}
	if maxSegments > 0 && info.Segments > maxSegments {
		return info, &LimitError{What: WhatSMS, Limit: maxSegments, Actual: info.Segments,
			Reason: fmt.Sprintf("body needs %d %s segments, more than the limit of %d", info.Segments, info.Encoding, maxSegments)}
	}
	return info, nil
}

// DefaultPushPayloadLimit is FCM's (and APNs') limit on a message's payload.
const DefaultPushPayloadLimit = 4096

// PushPayloadSize is the size in bytes of the JSON FCM counts against its
// limit: the notification (title, body) and the data map.
func PushPayloadSize(title, body string, data map[string]string) int {
	type notification struct {
		Title string `json:"title,omitempty"`
		Body  string `json:"body,omitempty"`
	}
	payload := struct {
		Notification *notification     `json:"notification,omitempty"`
		Data         map[string]string `json:"data,omitempty"`
	}{Data: data}
	if title != "" || body != "" {
		payload.Notification = &notification{Title: title, Body: body}
	}
	b, _ := json.Marshal(payload) // strings and a string map always marshal
	return len(b)
}

// CheckPush returns the payload size and an error when it exceeds limit
// (limit <= 0: DefaultPushPayloadLimit) or when there is nothing to show
// and no data.
func CheckPush(title, body string, data map[string]string, limit int) (int, error) {
	if limit <= 0 {
		limit = DefaultPushPayloadLimit
	}
	size := PushPayloadSize(title, body, data)
	if title == "" && body == "" && len(data) == 0 {
		return size, &LimitError{What: WhatPush, Reason: "title, body and data are all empty"}
	}
	if size > limit {
		return size, &LimitError{What: WhatPush, Limit: limit, Actual: size,
			Reason: fmt.Sprintf("payload is %d bytes, more than the limit of %d", size, limit)}
	}
	return size, nil
}

// Limits are the channel limits rendered content must fit, as the channels
// check them before sending, and the bounds of the render itself.
type Limits struct {
	SMSMaxSegments      int // 0: no limit
	PushMaxPayloadBytes int // 0: the FCM limit
	Render              RenderLimits
}

// Defaults of RenderLimits (docs/configuration.md, templates.*).
const (
	DefaultMaxTemplateBytes = 64 << 10
	DefaultMaxOutputBytes   = 1 << 20
	DefaultMaxDepth         = 16
	DefaultMaxSteps         = 50_000
	DefaultRenderTimeout    = 2 * time.Second
)

// RenderLimits bound the work one message's render may do. Templates are
// written by tenants and run with recipients' data, so a render is stopped
// where it goes over any of them: the helpers that loop or recurse check the
// budget as they go (raymond has no context to cancel), so the work really
// stops rather than running on in the background. A zero field takes its
// default.
type RenderLimits struct {
	MaxTemplateBytes int           // one template source (templates.maxSize)
	MaxOutputBytes   int           // all fields of one message together (templates.maxOutput)
	MaxDepth         int           // nested blocks: {{#if}}, {{#each}}, … (templates.maxDepth)
	MaxSteps         int           // helper calls, loop iterations and values printed (templates.maxSteps)
	Timeout          time.Duration // wall time of one message's render (templates.renderTimeout)
}

// WithDefaults fills the zero fields with the defaults.
func (l RenderLimits) WithDefaults() RenderLimits {
	if l.MaxTemplateBytes <= 0 {
		l.MaxTemplateBytes = DefaultMaxTemplateBytes
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = DefaultMaxSteps
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultRenderTimeout
	}
	return l
}
