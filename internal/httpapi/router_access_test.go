package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/actions"
	"github.com/notificationservice/notificationservice/internal/apperr"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/collections"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/httpapi"
)

// recordingServices stands in for the collection and action services. It
// checks nothing and records every call, so a test of the router alone sees
// whether a request got past the router's permission check, which is the
// only one (the services do not check again; TestRoutePermissions covers
// every route).
type recordingServices struct {
	mu    sync.Mutex
	calls []string
}

var errStub = apperr.New(apperr.NotFound, "stub service")

func (s *recordingServices) record(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, name)
	return errStub
}

func (s *recordingServices) taken() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func (s *recordingServices) CreateCollection(_ context.Context, _ auth.Principal, _ collections.CollectionInput) (collections.Collection, error) {
	return collections.Collection{}, s.record("CreateCollection")
}

func (s *recordingServices) ListCollections(_ context.Context, _ auth.Principal, _ collections.Filter, _ collections.Page) ([]collections.Collection, error) {
	return nil, s.record("ListCollections")
}

func (s *recordingServices) GetCollection(_ context.Context, _ auth.Principal, _ int64) (collections.Collection, error) {
	return collections.Collection{}, s.record("GetCollection")
}

func (s *recordingServices) UpdateCollection(_ context.Context, _ auth.Principal, _ int64, _ collections.CollectionPatch, _ int64) (collections.Collection, error) {
	return collections.Collection{}, s.record("UpdateCollection")
}

func (s *recordingServices) DeleteCollection(_ context.Context, _ auth.Principal, _, _ int64) (collections.Deleted, error) {
	return collections.Deleted{}, s.record("DeleteCollection")
}

func (s *recordingServices) CreateEvent(_ context.Context, _ auth.Principal, _ int64, _ collections.Input) (collections.Event, error) {
	return collections.Event{}, s.record("CreateEvent")
}

func (s *recordingServices) ListEvents(_ context.Context, _ auth.Principal, _ int64, _ collections.Filter, _ collections.Page) ([]collections.Event, error) {
	return nil, s.record("ListEvents")
}

func (s *recordingServices) GetEvent(_ context.Context, _ auth.Principal, _, _ int64) (collections.Event, error) {
	return collections.Event{}, s.record("GetEvent")
}

func (s *recordingServices) UpdateEvent(_ context.Context, _ auth.Principal, _, _ int64, _ collections.Patch, _ int64) (collections.Event, error) {
	return collections.Event{}, s.record("UpdateEvent")
}

func (s *recordingServices) DeleteEvent(_ context.Context, _ auth.Principal, _, _, _ int64) (collections.Deleted, error) {
	return collections.Deleted{}, s.record("DeleteEvent")
}

// actionServices is the action half; a separate type because both services
// have Create, Get, List, Update and Delete.
type actionServices struct{ *recordingServices }

func (s actionServices) Create(_ context.Context, _ auth.Principal, _ int64, _ actions.Input) (actions.Action, error) {
	return actions.Action{}, s.record("CreateAction")
}

func (s actionServices) Get(_ context.Context, _ auth.Principal, _, _ int64) (actions.Action, error) {
	return actions.Action{}, s.record("GetAction")
}

func (s actionServices) List(_ context.Context, _ auth.Principal, _ int64, _ actions.Filter, _ actions.Page) ([]actions.Action, error) {
	return nil, s.record("ListActions")
}

func (s actionServices) Update(_ context.Context, _ auth.Principal, _, _ int64, _ actions.Patch, _ int64) (actions.Action, error) {
	return actions.Action{}, s.record("UpdateAction")
}

func (s actionServices) Delete(_ context.Context, _ auth.Principal, _, _, _ int64) (actions.Deleted, error) {
	return actions.Deleted{}, s.record("DeleteAction")
}

// TestRouterChecksManageRightsItself tests the router's manage check with the
// services' own checks out of the picture: a caller who may read collection
// 5 but not change it, or who may change another collection, is refused with
// 403 before any service method is called; the collection's admin gets
// through to the service.
func TestRouterChecksManageRightsItself(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	verifier, err := auth.NewVerifier(context.Background(), cfg.Auth)
	require.NoError(t, err)
	svc := &recordingServices{}
	srv := httpapi.New(httpapi.Deps{
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTP:        cfg.HTTP,
		Verifier:    verifier,
		Collections: svc,
		Actions:     actionServices{svc},
	})
	token := func(roles []string, cols ...int64) string {
		tok, err := auth.Mint(cfg.Auth, auth.Principal{UserID: "9", Roles: roles, Collections: cols}, time.Hour, time.Now())
		require.NoError(t, err)
		return tok
	}
	var (
		viewer      = token([]string{auth.RoleViewer}, 5)
		sender      = token([]string{auth.RoleSender}, 5)
		otherAdmin  = token([]string{auth.RoleAdmin}, 6)
		viewerAdmin = token([]string{auth.RoleViewer, auth.RoleSender}, 5)
		admin       = token([]string{auth.RoleAdmin}, 5)
	)
	do := func(method, path, body, tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if method == http.MethodPatch || method == http.MethodDelete {
			req.Header.Set("If-Match", `"1"`)
		}
		addIdempotencyKey(req)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}

	manage := []struct{ method, path, body, call string }{
		{http.MethodPatch, "/v1/collections/5", `{"description": "d"}`, "UpdateCollection"},
		{http.MethodDelete, "/v1/collections/5", ``, "DeleteCollection"},
		{http.MethodPost, "/v1/collections/5/events", `{"name": "USER_INVITEUSER"}`, "CreateEvent"},
		{http.MethodPatch, "/v1/collections/5/events/3", `{"description": "d"}`, "UpdateEvent"},
		{http.MethodDelete, "/v1/collections/5/events/3", ``, "DeleteEvent"},
		{http.MethodPost, "/v1/collections/5/actions", `{"name": "a", "eventId": 3, "configName": "SendSmsConfig", "template": "hi"}`, "CreateAction"},
		{http.MethodPatch, "/v1/collections/5/actions/4", `{"description": "d"}`, "UpdateAction"},
		{http.MethodDelete, "/v1/collections/5/actions/4", ``, "DeleteAction"},
	}
	for _, rt := range manage {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			for name, tok := range map[string]string{"viewer": viewer, "sender": sender, "admin of another collection": otherAdmin, "viewer and sender": viewerAdmin} {
				rec := do(rt.method, rt.path, rt.body, tok)
				require.Equal(t, http.StatusForbidden, rec.Code, "%s: %s", name, rec.Body)
				require.Contains(t, rec.Body.String(), "PERMISSION_DENIED")
				require.Empty(t, svc.taken(), "%s: the router let the request through to the service", name)
			}
			rec := do(rt.method, rt.path, rt.body, admin)
			require.Equal(t, http.StatusNotFound, rec.Code, "the collection's admin reaches the (stub) service: %s", rec.Body)
			require.Equal(t, []string{rt.call}, svc.taken())
		})
	}
}
