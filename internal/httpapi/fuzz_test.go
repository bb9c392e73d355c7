package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/notificationservice/notificationservice/internal/auth"
)

// FuzzAPI sends fuzzed requests to the whole service on SQLite: a method, a
// route of the route table (its parameters filled with real ids, or the
// last one with fuzzed text), a query string, the Authorization,
// Idempotency-Key and Content-Type headers, and a body. Whatever it sends,
// the service must answer below 500, never panic (the recover middleware
// would turn a panic into a 500), answer every error with the documented
// body (docs/errors.md), and never store or return a NUL. `make fuzz` runs it
// for FUZZTIME; `go test` runs its seeds.
func FuzzAPI(f *testing.F) { fuzzAPI(f, "sqlite") }

// FuzzAPIPostgres is FuzzAPI on PostgreSQL, which refuses text that SQLite
// stores (NUL, invalid UTF-8), so input a SQLite run lets through shows up
// here as a 500.
func FuzzAPIPostgres(f *testing.F) { fuzzAPI(f, "postgres") }

// fuzzMethods are the methods the fuzzer picks from: the API's, and two it
// does not take.
var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut, http.MethodHead, http.MethodOptions}

// auth kinds the fuzzer picks from.
const (
	authSuperAdmin = iota
	authNone
	authGarbage
	authViewer
	authKinds
)

func fuzzAPI(f *testing.F, dialect string) {
	api := newAPI(f, dialect)
	fx := newFuzzFixture(f, api)
	routes := api.App.HTTP.Routes()
	slices.SortFunc(routes, func(a, b gin.RouteInfo) int {
		return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method)
	})
	route := func(method, path string) uint8 {
		for i, r := range routes {
			if r.Method == method && r.Path == path {
				return uint8(i)
			}
		}
		f.Fatalf("no route %s %s", method, path)
		return 0
	}
	method := func(m string) uint8 { return uint8(slices.Index(fuzzMethods, m)) }

	// Seeds: the inputs of issue 12, and one valid request per kind of body.
	const noRoute = 255
	for _, s := range []struct {
		method, route uint8
		seg, query    string
		auth          uint8
		key, ctype    string
		body          string
	}{
		{method("POST"), route("POST", "/v1/collections"), "", "", authSuperAdmin, "", "application/json", `{"name":"a\u0000b"}`},
		{method("GET"), route("GET", "/v1/collections"), "", "name=%00", authViewer, "", "", ""},
		{method("GET"), route("GET", "/v1/collections"), "", "name=%FF&limit=2", authSuperAdmin, "", "", ""},
		{method("POST"), route("POST", "/v1/collections/:collectionId/notifications"), "", "", authSuperAdmin, "k\xff", "application/json",
			`{"notification":[{"name":"USER_INVITEUSER","recipients":[{"email":"a@example.com","macros":{"FNAME":"A"}}]}]}`},
		{method("POST"), route("POST", "/v1/collections/:collectionId/notifications"), "", "", authSuperAdmin, "key-1", "application/json",
			`{"notification":[{"name":"USER_INVITEUSER","recipients":[{"email":"a@example.com"}]}]}`},
		{method("GET"), route("GET", "/v1/collections/:collectionId/deliveries"), "", "stauts=failed", authSuperAdmin, "", "", ""},
		{method("GET"), route("GET", "/v1/collections/:collectionId/notifications"), "", "name=x&from=1&to=2", authViewer, "", "", ""},
		{method("GET"), route("GET", "/v1/envelopes"), "", "since=0&state=parked", authSuperAdmin, "", "", ""},
		{method("POST"), route("POST", "/v1/envelopes/replay"), "", "", authSuperAdmin, "", "application/json", `{"since":0}`},
		{method("GET"), route("GET", "/v1/envelopes/:envelopeId"), "a\x00b", "", authSuperAdmin, "", "", ""},
		{method("PUT"), route("GET", "/v1/collections"), "", "", authSuperAdmin, "", "", ""},
		{method("PATCH"), route("PATCH", "/v1/collections/:collectionId/actions/:actionId"), "", "", authSuperAdmin, "", "application/json",
			`{"config":{"subject":"Hi {{FNAME}}","text":"Hi","locales":{"fr":{"subject":"Salut \u0000"}}}}`},
		{method("POST"), route("POST", "/v1/collections/:collectionId/actions"), "", "", authSuperAdmin, "", "application/json",
			`{"name":"A","eventId":1,"configName":"SendSmsConfig","config":{"body":"Hi {{FNAME}}"}}`},
		{method("POST"), route("POST", "/v1/collections/:collectionId/actions/:actionId/preview"), "", "", authViewer, "", "application/json",
			`{"locale":"fr_CA","macros":{"FNAME":"Zoë"}}`},
		{method("PATCH"), route("PATCH", "/v1/collections/:collectionId/events/:eventId"), "", "", authSuperAdmin, "", "application/json",
			`{"status":"INACTIVE"}`},
		{method("DELETE"), route("DELETE", "/v1/collections/:collectionId"), "9223372036854775808", "", authSuperAdmin, "", "", ""},
		{method("POST"), route("POST", "/v1/webhooks/sendgrid/events"), "", "", authNone, "", "application/json", `[{"event":"delivered"}]`},
		{method("POST"), route("POST", "/v1/webhooks/twilio/status"), "", "", authNone, "", "application/x-www-form-urlencoded", "MessageSid=SM1&MessageStatus=delivered"},
		{method("GET"), noRoute, "/v1/nothing/here", "", authGarbage, "", "", ""},
	} {
		f.Add(s.method, s.route, s.seg, s.query, s.auth, s.key, s.ctype, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, m, r uint8, seg, query string, authKind uint8, key, ctype string, body []byte) {
		req, ok := fx.request(routes, fuzzMethods[int(m)%len(fuzzMethods)], r, seg, query)
		if !ok {
			return // not a request a client can send over HTTP
		}
		for name, v := range map[string]string{"Idempotency-Key": key, "Content-Type": ctype} {
			if v == "" {
				continue
			}
			if !validHeaderValue(v) {
				return // net/http refuses such a header before any handler runs
			}
			req.Header.Set(name, v)
		}
		switch authKind % authKinds {
		case authSuperAdmin:
			req.Header.Set("Authorization", "Bearer "+fx.root)
		case authViewer:
			req.Header.Set("Authorization", "Bearer "+fx.viewer)
		case authGarbage:
			req.Header.Set("Authorization", "Bearer "+strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return -1
				}
				return r
			}, seg))
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))

		rec := httptest.NewRecorder()
		api.App.HTTP.ServeHTTP(rec, req)
		checkResponse(t, req, rec)
	})
}

// fuzzFixture is what the fuzzed requests address: a collection with an
// event and an action, and tokens for a super admin and a viewer of it.
type fuzzFixture struct {
	inputFixture
	viewer string
}

func newFuzzFixture(t testing.TB, api *testAPI) *fuzzFixture {
	t.Helper()
	fx := &fuzzFixture{}
	fx.root = api.superAdmin()
	fx.coll = api.createCollection("fuzz")
	fx.event = api.createEvent(fx.coll, "USER_INVITEUSER")
	res := api.do(http.MethodPost, fmt.Sprintf("/v1/collections/%d/actions", fx.coll), fx.root, map[string]any{
		"name": "Invite", "eventId": fx.event, "configName": "SendEmailConfig",
		"config": map[string]any{"subject": "Hi {{FNAME}}", "text": "Hi"},
	})
	if res.Code != http.StatusCreated {
		t.Fatalf("create action: %d %s", res.Code, res.Raw)
	}
	fx.action = jsonID(t, res, "action")
	fx.viewer = api.token(auth.Principal{UserID: "5", Roles: []string{auth.RoleViewer}, Collections: []int64{fx.coll}})
	return fx
}

// request builds the request a server would hand the router: the route's
// path with its parameters filled (the last with seg when seg is set), or
// seg as the whole path for route 255. ok is false for a target net/http
// would refuse to parse.
func (fx *fuzzFixture) request(routes gin.RoutesInfo, method string, r uint8, seg, query string) (*http.Request, bool) {
	var path string
	if int(r) < len(routes) {
		parts := strings.Split(routes[r].Path, "/")
		last := -1
		for i, p := range parts {
			if strings.HasPrefix(p, ":") {
				last = i
			}
		}
		for i, p := range parts {
			switch {
			case i == last && seg != "":
				parts[i] = url.PathEscape(seg)
			case p == ":collectionId":
				parts[i] = strconv.FormatInt(fx.coll, 10)
			case p == ":eventId":
				parts[i] = strconv.FormatInt(fx.event, 10)
			case p == ":actionId":
				parts[i] = strconv.FormatInt(fx.action, 10)
			case strings.HasPrefix(p, ":"):
				parts[i] = "1"
			}
		}
		path = strings.Join(parts, "/")
	} else {
		path = "/" + url.PathEscape(strings.TrimPrefix(seg, "/"))
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	req := &http.Request{Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Host: "example.test", RemoteAddr: "192.0.2.1:1234"}
	return req, true
}

// validHeaderValue is net/http's rule for a header value: no control
// character but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// errorStatuses maps each documented error status (docs/errors.md) below 500
// to the HTTP statuses it is sent with.
var errorStatuses = map[string][]int{
	"INVALID_ARGUMENT":    {http.StatusBadRequest},
	"UNAUTHENTICATED":     {http.StatusUnauthorized},
	"PERMISSION_DENIED":   {http.StatusForbidden},
	"NOT_FOUND":           {http.StatusNotFound},
	"METHOD_NOT_ALLOWED":  {http.StatusMethodNotAllowed},
	"ALREADY_EXISTS":      {http.StatusConflict},
	"FAILED_PRECONDITION": {http.StatusConflict, http.StatusPreconditionFailed},
	"RESOURCE_EXHAUSTED":  {http.StatusTooManyRequests},
}

var responseCodeRE = regexp.MustCompile(`^NO[A-Z]{3,5}[0-9]{4}$`)

// checkResponse asserts what every answer must be, whatever the request.
func checkResponse(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	code, raw := rec.Code, rec.Body.Bytes()
	what := fmt.Sprintf("%s %s → %d %s", req.Method, req.URL.String(), code, raw)
	if code >= 500 {
		t.Fatalf("5xx: %s", what)
	}
	if code >= 200 && code < 300 && bytes.Contains(raw, []byte(`\u0000`)) {
		t.Fatalf("a NUL was accepted and returned: %s", what)
	}
	if code < 400 {
		return
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error with Content-Type %q: %s", ct, what)
	}
	var body struct {
		Status          *string            `json:"status"`
		ResponseCode    *string            `json:"responseCode"`
		ResponseMessage *string            `json:"responseMessage"`
		Message         *string            `json:"message"`
		Details         *[]json.RawMessage `json:"details"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body is not the documented shape (%v): %s", err, what)
	}
	if body.Status == nil || body.ResponseCode == nil || body.ResponseMessage == nil || body.Message == nil || body.Details == nil {
		t.Fatalf("error body lacks a field: %s", what)
	}
	if !slices.Contains(errorStatuses[*body.Status], code) {
		t.Fatalf("status %q is not documented for HTTP %d: %s", *body.Status, code, what)
	}
	if !responseCodeRE.MatchString(*body.ResponseCode) || !strings.HasSuffix(*body.ResponseCode, fmt.Sprintf("%04d", code)) {
		t.Fatalf("responseCode %q does not end in the HTTP status: %s", *body.ResponseCode, what)
	}
	if *body.ResponseMessage == "" {
		t.Fatalf("empty responseMessage: %s", what)
	}
	if *body.Message != *body.ResponseMessage {
		t.Fatalf("message differs from responseMessage: %s", what)
	}
	for _, d := range *body.Details {
		var detail struct {
			Field  *string `json:"field"`
			Reason *string `json:"reason"`
		}
		dd := json.NewDecoder(bytes.NewReader(d))
		dd.DisallowUnknownFields()
		if err := dd.Decode(&detail); err != nil || detail.Field == nil || detail.Reason == nil || *detail.Reason == "" {
			t.Fatalf("detail %s is not {field, reason}: %s", d, what)
		}
	}
	if code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
		t.Fatalf("405 without Allow: %s", what)
	}
	if code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %s", what)
	}
}
