package outbox_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/notificationservice/notificationservice/internal/outbox"
)

// TestAsyncAPIDocumentsEveryEnvelope keeps docs/asyncapi.yaml honest: it is
// AsyncAPI 3, its $refs resolve, every detail type the service publishes has
// a message on a channel and an operation, and each message's example has
// the JSON shape (keys and types) of the golden envelope of that type.
func TestAsyncAPIDocumentsEveryEnvelope(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "asyncapi.yaml"))
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.True(t, strings.HasPrefix(doc["asyncapi"].(string), "3."), "not AsyncAPI 3")

	var broken []string
	walk(doc, func(ref string) {
		if _, ok := pointer(doc, ref); !ok {
			broken = append(broken, ref)
		}
	})
	require.Empty(t, broken, "$refs that resolve to nothing")

	messages := doc["components"].(map[string]any)["messages"].(map[string]any)
	byName := map[string]map[string]any{}
	for key, m := range messages {
		msg := m.(map[string]any)
		byName[msg["name"].(string)] = msg
		msg["key"] = key
	}
	onChannel, inOperation := refsUnder(doc["channels"]), refsUnder(doc["operations"])
	for _, dt := range outbox.DetailTypes() {
		msg, ok := byName[dt]
		require.True(t, ok, "no message named %s", dt)
		key := msg["key"].(string)
		require.True(t, onChannel["#/components/messages/"+key], "%s is on no channel", dt)
		require.True(t, hasSuffix(inOperation, "/messages/"+key), "%s is in no operation", dt)

		examples := msg["examples"].([]any)
		require.NotEmpty(t, examples, "%s has no example", dt)
		ex := examples[0].(map[string]any)["payload"].(map[string]any)
		require.Equal(t, dt, ex["detail-type"])

		golden, err := os.ReadFile(filepath.Join("testdata", strings.ReplaceAll(strings.TrimPrefix(dt, outbox.DetailTypePrefix), "/", "_")+".golden.json"))
		require.NoError(t, err)
		var g struct {
			Detail map[string]any `json:"Detail"`
		}
		require.NoError(t, json.Unmarshal(golden, &g))
		if a, ok := g.Detail["payload"].(map[string]any)["action"].(map[string]any); ok {
			delete(a, "config") // the catalogue's action examples predate config
		}
		require.Equal(t, shape(g.Detail), shape(ex["detail"]), "%s: the example's detail differs in shape from the golden envelope", dt)
	}
}

// shape replaces every leaf with its JSON type, so documents compare by
// structure.
func shape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = shape(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = shape(e)
		}
		return out
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	default:
		return "number"
	}
}

func walk(node any, fn func(string)) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				fn(s)
				continue
			}
			walk(v, fn)
		}
	case []any:
		for _, v := range n {
			walk(v, fn)
		}
	}
}

func refsUnder(node any) map[string]bool {
	out := map[string]bool{}
	walk(node, func(ref string) { out[ref] = true })
	return out
}

func hasSuffix(refs map[string]bool, suffix string) bool {
	for r := range refs {
		if strings.HasSuffix(r, suffix) {
			return true
		}
	}
	return false
}

func pointer(root map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = root
	for _, part := range strings.Split(p, "/") {
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
