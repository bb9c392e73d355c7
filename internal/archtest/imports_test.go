package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Patterns below are module-relative for the module's own packages
// ("internal/dispatch") and whole import paths for third-party ones. A
// pattern ending in "/..." takes the package and everything under it, as the
// go command reads it; any other pattern is one package.

// groups places every package of the module in one layer of
// docs/architecture.md. TestEveryPackageIsPlaced fails for a package on no
// group, so a new package (a split of dispatch, a render package, a webhook
// sender) has to be placed here, and so falls under the rules of its layer.
var groups = map[string][]string{
	"entry":     {"cmd/..."},
	"wiring":    {"internal/app"},
	"transport": {"internal/httpapi", "internal/rabbitmq"},
	// observability holds the decorators and middleware app puts around the
	// domain; they may see Gin (request middleware) and the domain types.
	"observability": {"internal/metrics", "internal/tracing", "internal/redact"},
	// dispatch is split by responsibility: the shared vocabulary (the
	// request and the records) and its parts, each a package.
	"domain": {
		"internal/dispatch", "internal/dispatch/intake", "internal/dispatch/planning",
		"internal/dispatch/delivery", "internal/dispatch/status", "internal/preview", "internal/render",
		"internal/channels", "internal/channels/webhookout", "internal/webhooks", "internal/suppressions",
		"internal/actions", "internal/collections", "internal/outbox", "internal/preferences",
	},
	"foundation": {
		"internal/macros", "internal/message", "internal/store", "internal/auth", "internal/invalidate",
		"internal/config", "internal/apperr", "internal/retry", "internal/condition", "internal/schedule", "internal/jsonenc", "internal/groupcommit", "api", "migrations",
	},
	// testsupport is imported by _test.go files only.
	"testsupport": {
		"internal/testdb", "internal/outbox/eventbridgetest", "internal/faulttest", "internal/benchbin",
		"internal/archtest", "internal/channels/channeltest", "internal/testalloc",
	},
}

// rule forbids every package matching from (and not exceptFrom) to reach a
// package matching to through any chain of non-test imports, or, where
// direct is set, to import one itself.
type rule struct {
	name       string
	from       []string
	exceptFrom []string
	to         []string
	direct     bool
	why        string
}

var transport = []string{
	"github.com/gin-gonic/gin/...", "internal/httpapi/...",
	"github.com/rabbitmq/amqp091-go/...", "internal/rabbitmq/...",
}

// renderers turn templates into what a channel sends: internal/render owns
// the one render path (issue 13), preview shows it.
var renderers = []string{"internal/macros/...", "internal/preview/...", "internal/render/..."}

var rules = []rule{
	{
		name: "domain-no-transport",
		from: join(groups["domain"], groups["foundation"]),
		to:   transport,
		why:  "the domain is driven by REST and AMQP alike; only httpapi and rabbitmq know either",
	},
	{
		name: "domain-no-observability",
		from: join(groups["domain"], groups["foundation"]),
		to:   groups["observability"],
		why:  "metrics and tracing wrap the domain from outside (app decorates); the domain does not call them",
	},
	{
		name: "transports-apart",
		from: []string{"internal/httpapi/..."},
		to:   []string{"internal/rabbitmq/...", "github.com/rabbitmq/amqp091-go/..."},
		why:  "REST and the queue are two doors onto the same intake; neither goes through the other",
	},
	{
		name: "transports-apart",
		from: []string{"internal/rabbitmq/..."},
		to:   []string{"internal/httpapi/...", "github.com/gin-gonic/gin/..."},
		why:  "REST and the queue are two doors onto the same intake; neither goes through the other",
	},
	{
		name: "channels-no-dispatch",
		from: []string{"internal/channels/..."},
		to:   []string{"internal/dispatch/..."},
		why:  "a channel sends one message and reports; planning, claiming and retrying are dispatch's, which calls channels",
	},
	{
		name: "channels-no-config-domain",
		from: []string{"internal/channels/..."},
		to:   []string{"internal/actions/...", "internal/collections/..."},
		why:  "a provider needs a message, not the configuration model; the channel names belong to channels",
	},
	{
		name: "render-no-channels",
		from: renderers,
		to:   []string{"internal/channels/...", "internal/dispatch/..."},
		why:  "rendering is pure (the worker, preview and test-send share it); it must not reach a provider or the queue",
	},
	{
		name: "dispatch-vocabulary-is-a-leaf",
		from: []string{"internal/dispatch"},
		to:   []string{"internal/dispatch/intake", "internal/dispatch/planning", "internal/dispatch/delivery", "internal/dispatch/status"},
		why:  "the request and the records are what every part of dispatch (and the edges) share; they know none of the parts",
	},
	{
		name: "planning-is-pure",
		from: []string{"internal/dispatch/planning/..."},
		to: []string{
			"gorm.io/...", "internal/store/...", "internal/channels/...", "internal/outbox/...",
			"internal/dispatch/intake/...", "internal/dispatch/delivery/...", "internal/dispatch/status/...",
		},
		// Direct only: planning reads the action model, and actions has its
		// own storage; what is forbidden is planning touching any itself.
		direct: true,
		why:    "planning decides what a notification becomes; the intake stores it. Rules that need data get it through interfaces planning declares",
	},
	{
		name: "workers-do-not-plan",
		from: []string{"internal/dispatch/delivery/...", "internal/dispatch/status/..."},
		to:   []string{"internal/dispatch/intake/...", "internal/dispatch/planning/..."},
		why:  "the workers and the status reads take rows as the intake stored them; how they were planned is not theirs to know",
	},
	{
		name: "message-is-a-leaf",
		from: []string{"internal/message/..."},
		to:   []string{"internal/...", "api/...", "migrations/..."},
		why:  "the rendered message is shared by render (which reads actions) and channels (which must not): it can import neither, nor anything that might one day",
	},
	{
		name: "schedule-is-a-leaf",
		from: []string{"internal/schedule/..."},
		to:   []string{"internal/...", "api/...", "migrations/..."},
		why:  "the quiet-hours arithmetic is shared by the validation of collections and actions and by the delivery gates: it knows none of them",
	},
	{
		name: "outbox-no-entities",
		from: []string{"internal/outbox/..."},
		to: []string{
			"internal/collections/...", "internal/actions/...", "internal/dispatch/...",
			"internal/channels/...", "internal/preview/...", "internal/render/...",
		},
		why: "every domain records its envelopes through the outbox; the outbox knowing one of them would be a cycle in waiting",
	},
	{
		name: "config-domain-no-delivery",
		from: []string{"internal/collections/...", "internal/actions/..."},
		to:   []string{"internal/dispatch/...", "internal/preview/...", "internal/render/..."},
		why:  "collections and actions are what delivery reads; they never depend on how it runs",
	},
	{
		name: "foundation-no-domain",
		from: groups["foundation"],
		to:   join(groups["domain"], groups["observability"]),
		why:  "the foundation packages are leaves every layer may use; one reaching up would tie them all together",
	},
	{
		name:       "only-cmd-imports-app",
		from:       []string{"..."},
		exceptFrom: []string{"cmd/...", "internal/app"},
		to:         []string{"internal/app/..."},
		why:        "app is the one place that wires everything; a package importing it would see every other",
	},
	{
		// Direct only: app and httpapi reach the SDKs through channels and
		// outbox, as they should; what is forbidden is naming them.
		name:       "provider-sdks-behind-adapters",
		from:       []string{"..."},
		exceptFrom: join([]string{"internal/channels/...", "internal/outbox/..."}, groups["testsupport"]),
		to: []string{
			"github.com/sendgrid/...", "github.com/twilio/...",
			"github.com/aws/aws-sdk-go-v2/service/...",
		},
		direct: true,
		why:    "a provider's SDK is the channel's (or the outbox sink's) business; the conformance suite and a provider swap touch one package",
	},
	{
		name:       "test-support-only-in-tests",
		from:       []string{"..."},
		exceptFrom: groups["testsupport"],
		to:         []string{"internal/testdb/...", "internal/outbox/eventbridgetest/...", "internal/channels/channeltest/...", "internal/testalloc/..."},
		why:        "test helpers (private schemas, a fake EventBridge, the channel conformance suite, the allocation tests' race switch) must never ship in the binary",
	},
}

// allowed lists the edges that break a rule TODAY, each a debt that
// docs/architecture.md names under "Known debts" and issue 13 is to pay.
// An entry lets only that one direct edge through; any other chain to the
// same target still fails. TestAllowListIsCurrent fails once the edge is
// gone, so the entry and its line in the document are removed with the debt.
// Empty since issue 13 paid the last two (the channel names, SendGrid's
// signature headers in httpapi).
var allowed = []struct{ rule, from, to, why string }{}

// pkg is what go list tells of one package.
type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// graph is the non-test import graph of the module and of everything it
// depends on, as the go command builds it.
type graph struct {
	module  string
	imports map[string][]string
	own     []string // the module's own packages, sorted
}

func loadGraph(t *testing.T) graph {
	t.Helper()
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", stderrOf(err))
	}
	g := graph{module: strings.TrimSpace(string(mod)), imports: map[string][]string{}}
	// -deps brings the third-party packages too, so a chain that reaches Gin
	// through some library is seen. Test files are not read: the rules are
	// about what ships in the binary (tests may build the whole service).
	out, err := exec.Command("go", "list", "-e", "-deps",
		"-json=ImportPath,Imports,Standard,Module,Error", g.module+"/...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", stderrOf(err))
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.Standard {
			continue
		}
		g.imports[p.ImportPath] = p.Imports
		if p.Module != nil && p.Module.Path == g.module {
			g.own = append(g.own, p.ImportPath)
		}
	}
	sort.Strings(g.own)
	if len(g.own) < 10 {
		t.Fatalf("go list found only %d packages of %s: %v", len(g.own), g.module, g.own)
	}
	return g
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return err.Error() + ": " + string(ee.Stderr)
	}
	return err.Error()
}

// full turns a pattern or path into a whole import path: the module's own
// are written without the module, and have no domain in their first element.
func (g graph) full(p string) string {
	switch {
	case p == "...":
		return g.module + "/..."
	case !strings.Contains(strings.SplitN(p, "/", 2)[0], "."):
		return g.module + "/" + p
	}
	return p
}

// matches reports whether path is named by one of patterns.
func (g graph) matches(path string, patterns []string) bool {
	for _, p := range patterns {
		full := g.full(p)
		if base, ok := strings.CutSuffix(full, "/..."); ok {
			if path == base || strings.HasPrefix(path, base+"/") {
				return true
			}
		} else if path == full {
			return true
		}
	}
	return false
}

// chain returns the shortest chain of imports from start to a package
// matching to, skipping the edges skip holds, or nil if there is none.
func (g graph) chain(start string, to []string, skip map[[2]string]bool) []string {
	prev := map[string]string{start: ""}
	queue := []string{start}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, next := range g.imports[cur] {
			if _, seen := prev[next]; seen || skip[[2]string{cur, next}] {
				continue
			}
			prev[next] = cur
			if g.matches(next, to) {
				path := []string{next}
				for p := cur; p != ""; p = prev[p] {
					path = append(path, p)
				}
				slices.Reverse(path)
				return path
			}
			queue = append(queue, next)
		}
	}
	return nil
}

func (g graph) short(path string) string {
	return strings.TrimPrefix(path, g.module+"/")
}

func TestForbiddenImports(t *testing.T) {
	g := loadGraph(t)
	for _, r := range rules {
		skip := map[[2]string]bool{}
		for _, a := range allowed {
			if a.rule == r.name {
				skip[[2]string{g.full(a.from), g.full(a.to)}] = true
			}
		}
		found := map[[2]string][]string{}
		for _, p := range g.own {
			if !g.matches(p, r.from) || g.matches(p, r.exceptFrom) {
				continue
			}
			if r.direct {
				for _, imp := range g.imports[p] {
					if g.matches(imp, r.to) && !skip[[2]string{p, imp}] {
						found[[2]string{p, imp}] = []string{p, imp}
					}
				}
				continue
			}
			c := g.chain(p, r.to, skip)
			if c == nil {
				continue
			}
			// One forbidden edge is reached from every package above it;
			// name it once, with the shortest chain that shows it.
			edge := [2]string{c[len(c)-2], c[len(c)-1]}
			if old, ok := found[edge]; !ok || len(c) < len(old) {
				found[edge] = c
			}
		}
		edges := make([][2]string, 0, len(found))
		for e := range found {
			edges = append(edges, e)
		}
		slices.SortFunc(edges, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
		for _, e := range edges {
			c := found[e]
			for i := range c {
				c[i] = g.short(c[i])
			}
			t.Errorf("%s: forbidden import %s -> %s (chain %s): %s (docs/architecture.md)",
				r.name, g.short(e[0]), g.short(e[1]), strings.Join(c, " -> "), r.why)
		}
	}
}

// TestAllowListIsCurrent fails when a debt is paid, so its entry (and its
// line in docs/architecture.md) goes with it instead of excusing the next
// edge of the same kind.
func TestAllowListIsCurrent(t *testing.T) {
	g := loadGraph(t)
	for _, a := range allowed {
		if !slices.ContainsFunc(rules, func(r rule) bool { return r.name == a.rule }) {
			t.Errorf("allow-list entry %s -> %s names no rule %q", a.from, a.to, a.rule)
		}
		if !slices.Contains(g.imports[g.full(a.from)], g.full(a.to)) {
			t.Errorf("allow-list entry %s -> %s (%s) is no longer needed: remove it here and from docs/architecture.md",
				a.from, a.to, a.rule)
		}
	}
}

// TestEveryPackageIsPlaced fails for a package of the module that is on no
// group (or on two), so a new package is placed in a layer, and under its
// rules, when it is added.
func TestEveryPackageIsPlaced(t *testing.T) {
	g := loadGraph(t)
	names := make([]string, 0, len(groups))
	for name := range groups {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, p := range g.own {
		var in []string
		for _, name := range names {
			if g.matches(p, groups[name]) {
				in = append(in, name)
			}
		}
		if len(in) != 1 {
			t.Errorf("package %s is in groups %v: place it in exactly one group of internal/archtest and docs/architecture.md",
				g.short(p), in)
		}
	}
}

func join(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
