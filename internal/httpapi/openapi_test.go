package httpapi_test

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/notificationservice/notificationservice/api"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// alwaysDocumented are the routes outside /v1 the document must describe.
var alwaysDocumented = []string{"GET /healthz", "GET /readyz", "GET /openapi.yaml", "GET /metrics"}

type openAPIDoc struct {
	root  map[string]any
	paths map[string]any
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var root map[string]any
	require.NoError(t, yaml.Unmarshal(api.OpenAPI, &root), "api/openapi.yaml is not YAML")
	version, _ := root["openapi"].(string)
	require.True(t, strings.HasPrefix(version, "3."), "openapi: %q is not OpenAPI 3", version)
	paths, ok := root["paths"].(map[string]any)
	require.True(t, ok, "api/openapi.yaml has no paths object")
	return openAPIDoc{root: root, paths: paths}
}

// operations lists "METHOD /path" for every operation in the document.
func (d openAPIDoc) operations() []string {
	var out []string
	for path, item := range d.paths {
		ops, _ := item.(map[string]any)
		for _, m := range openAPIMethods {
			if _, ok := ops[m]; ok {
				out = append(out, strings.ToUpper(m)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// openAPIPath turns a gin route (/v1/collections/:collectionId) into its
// OpenAPI form (/v1/collections/{collectionId}).
func openAPIPath(ginPath string) string { return ginParam.ReplaceAllString(ginPath, "{$1}") }

// TestOpenAPIMatchesRoutes is the contract test: every registered /v1 route
// and the operational endpoints are in api/openapi.yaml, and everything the
// document names is a registered route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)
	a := newAPI(t, "sqlite")

	var registered []string
	for _, rt := range a.App.HTTP.Routes() {
		registered = append(registered, rt.Method+" "+openAPIPath(rt.Path))
	}
	documented := doc.operations()

	var missing []string
	for _, r := range registered {
		_, path, _ := strings.Cut(r, " ")
		required := strings.HasPrefix(path, "/v1/") || slices.Contains(alwaysDocumented, r)
		if required && !slices.Contains(documented, r) {
			missing = append(missing, r)
		}
	}
	for _, r := range alwaysDocumented {
		require.Contains(t, registered, r, "the service no longer serves %s", r)
	}
	var unknown []string
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			unknown = append(unknown, d)
		}
	}
	slices.Sort(missing)
	require.Empty(t, missing, "routes the service registers but api/openapi.yaml does not document")
	require.Empty(t, unknown, "operations api/openapi.yaml documents but the service does not register")
}

// TestOpenAPIIsConsistent checks what a client generator would trip on:
// every $ref resolves, every {param} in a path is declared as a path
// parameter, and operationIds are unique.
func TestOpenAPIIsConsistent(t *testing.T) {
	t.Parallel()
	doc := loadOpenAPI(t)

	var broken []string
	walkRefs(doc.root, func(ref string) {
		if _, ok := resolve(doc.root, ref); !ok {
			broken = append(broken, ref)
		}
	})
	require.Empty(t, broken, "$refs that resolve to nothing")

	seen := map[string]string{}
	for path, rawItem := range doc.paths {
		item, _ := rawItem.(map[string]any)
		want := map[string]bool{}
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
			want[m[1]] = true
		}
		itemParams := pathParams(doc.root, item["parameters"])
		for _, m := range openAPIMethods {
			rawOp, ok := item[m]
			if !ok {
				continue
			}
			op, _ := rawOp.(map[string]any)
			where := strings.ToUpper(m) + " " + path
			declared := map[string]bool{}
			for k := range itemParams {
				declared[k] = true
			}
			for k := range pathParams(doc.root, op["parameters"]) {
				declared[k] = true
			}
			require.Equal(t, want, declared, "%s: path parameters declared must match the path template", where)

			id, _ := op["operationId"].(string)
			require.NotEmpty(t, id, "%s has no operationId", where)
			require.NotContains(t, seen, id, "operationId %q is used by %s and %s", id, seen[id], where)
			seen[id] = where

			responses, _ := op["responses"].(map[string]any)
			require.NotEmpty(t, responses, "%s documents no responses", where)
		}
	}
}

// TestOpenAPIIsServed checks /openapi.yaml serves the embedded document to
// anyone.
func TestOpenAPIIsServed(t *testing.T) {
	t.Parallel()
	a := newAPI(t, "sqlite")
	res := a.do(http.MethodGet, "/openapi.yaml", "", nil)
	require.Equal(t, http.StatusOK, res.Code)
	require.Equal(t, api.OpenAPI, res.Raw)
}

// walkRefs calls fn with every $ref value in the tree.
func walkRefs(node any, fn func(string)) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				fn(s)
				continue
			}
			walkRefs(v, fn)
		}
	case []any:
		for _, v := range n {
			walkRefs(v, fn)
		}
	}
}

// resolve follows a local JSON pointer ("#/components/schemas/Error").
func resolve(root map[string]any, ref string) (any, bool) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = root
	for _, part := range strings.Split(ptr, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// pathParams returns the names of the in: path parameters in a parameters
// list, following $refs.
func pathParams(root map[string]any, raw any) map[string]bool {
	out := map[string]bool{}
	list, _ := raw.([]any)
	for _, p := range list {
		m, _ := p.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			r, _ := resolve(root, ref)
			m, _ = r.(map[string]any)
		}
		if m["in"] == "path" {
			name, _ := m["name"].(string)
			out[name] = true
		}
	}
	return out
}
