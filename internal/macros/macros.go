// Package macros renders a recipient's macros into templates written in the
// handlebars syntax SendGrid dynamic templates use ({{FNAME}}), so one
// template language serves local rendering and SendGrid. It also checks the
// limits a rendered message must fit before it is sent: SMS segments and the
// push payload size.
//
// The parser and evaluator are github.com/mailgun/raymond/v2 (a maintained
// handlebars implementation); this package adds what raymond does not know:
// text versus HTML escaping per call, the missing-macro policy, SendGrid's
// helpers, a cache of compiled templates, panic safety for admin-written
// templates, and bounds on every render (Budget, RenderLimits) and on what a
// template may be (Check), with helpers that never reach outside the
// render. It knows nothing of actions (internal/preview renders an
// action's content), so the actions package may use it to validate.
package macros

import (
	"container/list"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/mailgun/raymond/v2"
	"github.com/mailgun/raymond/v2/ast"
	"github.com/mailgun/raymond/v2/parser"
)

// Mode says how values are escaped.
type Mode int

// Modes.
const (
	Text Mode = iota // SMS, push, subjects, plain-text bodies: values as they are
	HTML             // HTML bodies: {{X}} HTML-escapes its value, {{{X}}} does not
)

// String names the mode.
func (m Mode) String() string {
	if m == HTML {
		return "html"
	}
	return "text"
}

// Missing-macro policies (the same strings as actions.MissingFail etc.).
const (
	MissingFail  = "fail"  // the render fails with a *MissingError (the default)
	MissingBlank = "blank" // the placeholder renders as ""
	MissingKeep  = "keep"  // the placeholder renders as {{NAME}}
)

// MissingError names the macros a template needs and the recipient lacks.
// Name is the first in template order; Names lists them all.
type MissingError struct {
	Name  string
	Names []string
}

func (e *MissingError) Error() string {
	if len(e.Names) > 1 {
		return fmt.Sprintf("macros: missing macros %s", strings.Join(e.Names, ", "))
	}
	return fmt.Sprintf("macros: missing macro %q", e.Name)
}

// TemplateError is a template that does not parse or fails while evaluating
// (a malformed {{#if}}, an unclosed block). Retrying cannot fix it: the
// action's template must change.
type TemplateError struct {
	Err error
}

func (e *TemplateError) Error() string { return "macros: bad template: " + e.Err.Error() }

func (e *TemplateError) Unwrap() error { return e.Err }

// DefaultCacheSize is how many compiled templates the package-level Render
// keeps. A template is compiled once per (source, mode) while it stays in
// the cache.
const DefaultCacheSize = 2048

// maxCacheBytes bounds the template source a Renderer keeps, whatever the
// entry count, so a few very large HTML templates cannot pin much memory.
const maxCacheBytes = 32 << 20

// shared backs the package-level Render. It is pure memoisation: a cache hit
// and a miss give the same result, so sharing it across callers changes no
// behaviour; callers that want their own bound use New.
var shared = New(DefaultCacheSize)

// Render renders tmpl with vars. mode picks the escaping; missing is the
// missing-macro policy ("" means fail). Compiled templates are cached. The
// render is bounded by the default RenderLimits; a message renders its
// fields through one Budget (NewBudget) to share configured ones.
func Render(tmpl string, vars map[string]string, mode Mode, missing string) (string, error) {
	return shared.Render(tmpl, vars, mode, missing)
}

// Compile returns the compiled template for tmpl in mode from the shared
// cache: a *TemplateError when it does not parse. Admin validation calls
// Check, which also refuses pathological templates, before one is stored.
func Compile(tmpl string, mode Mode) (*Template, error) { return shared.Compile(tmpl, mode) }

// Renderer compiles templates and keeps the most recently used ones. It is
// safe for concurrent use.
type Renderer struct {
	mu       sync.Mutex
	capacity int
	order    *list.List // of *entry, most recently used first
	byKey    map[cacheKey]*list.Element
	bytes    int // total len(src) of the cached entries
}

// New returns a Renderer caching up to capacity compiled templates (at least 1).
func New(capacity int) *Renderer {
	if capacity < 1 {
		capacity = 1
	}
	return &Renderer{capacity: capacity, order: list.New(), byKey: map[cacheKey]*list.Element{}}
}

type cacheKey struct {
	src  string
	mode Mode
}

type entry struct {
	key cacheKey
	tpl *Template
	err error
}

// Render renders tmpl with vars within the default RenderLimits; see the
// package-level Render.
func (r *Renderer) Render(tmpl string, vars map[string]string, mode Mode, missing string) (string, error) {
	return r.RenderWithin(NewBudget(RenderLimits{}), tmpl, vars, mode, missing)
}

// RenderWithin renders tmpl with vars, spending from b: a render over one of
// b's limits returns a *LimitError that matches ErrRenderLimit.
func (r *Renderer) RenderWithin(b *Budget, tmpl string, vars map[string]string, mode Mode, missing string) (string, error) {
	if err := b.checkSource(tmpl); err != nil {
		return "", err
	}
	if !strings.Contains(tmpl, "{{") {
		// Nothing to substitute; skip the cache.
		if err := b.produce(len(tmpl)); err != nil {
			return "", err
		}
		return tmpl, nil
	}
	t, err := r.Compile(tmpl, mode)
	if err != nil {
		return "", err
	}
	return t.ExecuteWithin(b, vars, missing)
}

// Compile returns the compiled template for tmpl in mode, from the cache when
// it is there. A template that does not parse returns a *TemplateError (and
// that failure is cached too).
func (r *Renderer) Compile(tmpl string, mode Mode) (*Template, error) {
	key := cacheKey{src: tmpl, mode: mode}
	r.mu.Lock()
	if el, ok := r.byKey[key]; ok {
		r.order.MoveToFront(el)
		e := el.Value.(*entry)
		r.mu.Unlock()
		return e.tpl, e.err
	}
	r.mu.Unlock()

	// Compile outside the lock; two goroutines may compile the same source
	// at once, which costs a little work and gives the same result.
	t, err := compile(tmpl, mode)

	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.byKey[key]; ok {
		r.order.MoveToFront(el)
		e := el.Value.(*entry)
		return e.tpl, e.err
	}
	r.byKey[key] = r.order.PushFront(&entry{key: key, tpl: t, err: err})
	r.bytes += len(tmpl)
	for r.order.Len() > 1 && (r.order.Len() > r.capacity || r.bytes > maxCacheBytes) {
		last := r.order.Back()
		r.order.Remove(last)
		k := last.Value.(*entry).key
		delete(r.byKey, k)
		r.bytes -= len(k.src)
	}
	return t, err
}

// Len is the number of cached templates.
func (r *Renderer) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}

// Template is a compiled template, safe for concurrent Execute.
type Template struct {
	tpl  *raymond.Template // with helpers(); the budget comes per render
	size int               // bytes of the source
	mode Mode
	// refs are the macros the template prints unconditionally, in template
	// order: the names the missing-macro policy applies to.
	refs []string
	// plain is the template as pieces of literal text and printed macros,
	// when that is all it holds (executePlain); nil otherwise.
	plain []piece
}

// piece is literal text, or a macro printed there (name set).
type piece struct {
	text   string
	name   string
	escape bool // HTML-escape the value ({{NAME}} in HTML mode)
}

// Macros lists the macros the template prints outside a guard such as
// {{#if NAME}}, in template order: the ones a recipient must have under the
// fail policy.
func (t *Template) Macros() []string { return append([]string(nil), t.refs...) }

// Execute renders the template with vars under the missing-macro policy,
// within the default RenderLimits.
func (t *Template) Execute(vars map[string]string, missing string) (string, error) {
	return t.ExecuteWithin(NewBudget(RenderLimits{}), vars, missing)
}

// ExecuteWithin renders the template with vars under the missing-macro
// policy, spending from b.
func (t *Template) ExecuteWithin(b *Budget, vars map[string]string, missing string) (out string, err error) {
	if t.size > b.lim.MaxTemplateBytes {
		return "", b.fail(b.lim.MaxTemplateBytes, t.size, "template is %d bytes, more than %d (templates.maxSize)", t.size, b.lim.MaxTemplateBytes)
	}
	var absent []string
	for _, name := range t.refs {
		_, extra := b.extra[name]
		if _, ok := vars[name]; !ok && !extra {
			absent = append(absent, name)
		}
	}
	if len(absent) > 0 && missing != MissingBlank && missing != MissingKeep {
		return "", &MissingError{Name: absent[0], Names: absent}
	}
	if err := b.check(); err != nil {
		return "", err // spent by an earlier field
	}
	if t.plain != nil && len(b.extra) == 0 {
		return t.executePlain(b, vars, missing)
	}
	ctx := b.context(vars, len(t.refs)+len(b.extra))
	for k, v := range b.extra {
		ctx[k] = b.wrap(v)
	}
	if missing == MissingKeep {
		for _, name := range absent {
			ctx[name] = raymond.SafeString("{{" + name + "}}")
		}
	}
	// MissingBlank: raymond renders an absent value as "".
	start := b.produced
	defer func() {
		if v := recover(); v != nil {
			if le, ok := v.(*LimitError); ok {
				out, err = "", le
				return
			}
			out, err = "", &TemplateError{Err: fmt.Errorf("evaluation panicked: %v", v)}
		}
	}()
	frame := raymond.NewDataFrame()
	frame.Set(budgetKey, b)
	out, err = t.tpl.ExecWith(ctx, frame)
	if b.err != nil {
		return "", b.err // raymond may have printed "" for a value over the limit
	}
	var le *LimitError
	if errors.As(err, &le) {
		return "", le
	}
	if err != nil {
		return "", &TemplateError{Err: err}
	}
	// The literal text outside blocks is counted here, once it is known.
	if err := b.produce(start + len(out) - b.produced); err != nil {
		return "", err
	}
	return out, nil
}

// compile parses src into a Template for mode. In Text mode every escaped
// mustache {{X}} is rewritten to its unescaped form {{&X}} before the final
// parse, so no value and no helper output is HTML-escaped; the positions come
// from raymond's own parser, not from pattern matching.
func compile(src string, mode Mode) (t *Template, err error) {
	defer func() {
		if v := recover(); v != nil {
			t, err = nil, &TemplateError{Err: fmt.Errorf("parser panicked: %v", v)}
		}
	}()
	size := len(src)
	prog, err := parser.Parse(src)
	if err != nil {
		return nil, &TemplateError{Err: err}
	}
	refs := requiredRefs(prog)
	if mode == Text {
		src = unescapeAll(src, prog)
	}
	tpl, err := raymond.Parse(src)
	if err != nil {
		return nil, &TemplateError{Err: err}
	}
	tpl.RegisterHelpers(helpers())
	final := prog
	if mode == Text {
		// The program raymond runs: the rewritten source, parsed again.
		if final, err = parser.Parse(src); err != nil {
			return nil, &TemplateError{Err: err}
		}
	}
	return &Template{tpl: tpl, size: size, mode: mode, refs: refs, plain: plainPieces(final)}, nil
}

// plainPieces is prog as literal text and printed macros ({{NAME}},
// {{{NAME}}}, {{&NAME}}), or nil when it holds anything else: a block, a
// helper, a path, a comment, a partial. Most action templates are only that
// ("Hi {{FNAME}}"), and raymond's evaluation of one (a data frame, a
// visitor, reflection on the context, fmt for each value) was a tenth of a
// delivery's CPU in the binary harness's REST profile (docs/benchmarks.md).
func plainPieces(prog *ast.Program) []piece {
	if prog == nil {
		return nil
	}
	out := make([]piece, 0, len(prog.Body))
	for _, n := range prog.Body {
		switch st := n.(type) {
		case *ast.ContentStatement:
			out = append(out, piece{text: st.Value}) // as raymond prints it (VisitContent)
		case *ast.MustacheStatement:
			name := plainName(st.Expression)
			// A [segment literal] keeps its brackets in the AST and loses
			// them in raymond's lookup: left to raymond.
			if name == "" || strings.ContainsAny(name, "[]") || isHelper(name) {
				return nil
			}
			out = append(out, piece{name: name, escape: !st.Unescaped})
		default:
			return nil
		}
	}
	return out
}

// executePlain renders a plain template (Template.plain) as raymond renders
// it: literal text as is, a macro's value HTML-escaped unless printed
// unescaped (raymond.Escape), an absent one as "" or, under the keep policy,
// as {{NAME}} unescaped; each non-empty value is counted as value.String
// counts it, and the rest of the output after. ExecuteWithin has applied the
// fail policy and counted the render's first step.
func (t *Template) executePlain(b *Budget, vars map[string]string, missing string) (string, error) {
	start := b.produced
	var out strings.Builder
	out.Grow(t.size)
	for _, p := range t.plain {
		if p.name == "" {
			out.WriteString(p.text)
			continue
		}
		v, ok := vars[p.name]
		switch {
		case !ok:
			if missing == MissingKeep {
				out.WriteString("{{" + p.name + "}}")
			}
			continue
		case v == "":
			continue
		case b.check() != nil || b.produce(len(v)) != nil:
			continue // over a limit: value.String prints nothing
		}
		if p.escape {
			v = raymond.Escape(v)
		}
		out.WriteString(v)
	}
	if b.err != nil {
		return "", b.err
	}
	s := out.String()
	if err := b.produce(start + len(s) - b.produced); err != nil {
		return "", err
	}
	return s, nil
}

// unescapeAll inserts & into every escaped mustache of prog (parsed from src).
func unescapeAll(src string, prog *ast.Program) string {
	var at []int
	walkMustaches(prog, func(m *ast.MustacheStatement) {
		if m.Unescaped {
			return
		}
		p := m.Loc.Pos
		if p < 0 || p+2 > len(src) || src[p:p+2] != "{{" {
			return // not where we expect: leave it (it stays escaped)
		}
		p += 2
		if p < len(src) && src[p] == '~' {
			p++
		}
		at = append(at, p)
	})
	if len(at) == 0 {
		return src
	}
	// Positions come in document order, except that walk order visits a
	// block's body before a later sibling, which is still ascending.
	var b strings.Builder
	b.Grow(len(src) + len(at))
	prev := 0
	for _, p := range at {
		if p < prev {
			continue
		}
		b.WriteString(src[prev:p])
		b.WriteByte('&')
		prev = p
	}
	b.WriteString(src[prev:])
	return b.String()
}

func walkMustaches(prog *ast.Program, fn func(*ast.MustacheStatement)) {
	if prog == nil {
		return
	}
	for _, n := range prog.Body {
		switch s := n.(type) {
		case *ast.MustacheStatement:
			fn(s)
		case *ast.BlockStatement:
			walkMustaches(s.Program, fn)
			walkMustaches(s.Inverse, fn)
		}
	}
}

// requiredRefs lists, in order and without repeats, the macros prog prints
// that a missing-macro policy applies to: a plain {{NAME}} (or {{{NAME}}}),
// not a helper call, not inside {{#each}} or {{#with}} (whose context is not
// the macros), and not guarded by an enclosing {{#if NAME}} (or the
// {{else}} of {{#unless NAME}}), where an absent value is the author's intent.
func requiredRefs(prog *ast.Program) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(p *ast.Program, guarded map[string]bool)
	walk = func(p *ast.Program, guarded map[string]bool) {
		if p == nil {
			return
		}
		for _, n := range p.Body {
			switch s := n.(type) {
			case *ast.MustacheStatement:
				name := plainName(s.Expression)
				if name == "" || isHelper(name) || guarded[name] || seen[name] {
					continue
				}
				seen[name] = true
				out = append(out, name)
			case *ast.BlockStatement:
				helper := s.Expression.HelperName()
				cond := ""
				if len(s.Expression.Params) == 1 {
					if pe, ok := s.Expression.Params[0].(*ast.PathExpression); ok && simplePath(pe) {
						cond = pe.Parts[0]
					}
				}
				switch {
				case helper == "if":
					walk(s.Program, with(guarded, cond))
					walk(s.Inverse, guarded)
				case helper == "unless":
					walk(s.Program, guarded)
					walk(s.Inverse, with(guarded, cond))
				case helper == "each" || helper == "with" || !isHelper(helper):
					// The body runs in another context (the iterated value,
					// or the section's own value); only {{else}} is ours.
					walk(s.Inverse, guarded)
				default:
					walk(s.Program, guarded)
					walk(s.Inverse, guarded)
				}
			}
		}
	}
	walk(prog, map[string]bool{})
	return out
}

func with(m map[string]bool, name string) map[string]bool {
	if name == "" {
		return m
	}
	out := make(map[string]bool, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	out[name] = true
	return out
}

// plainName is NAME for the expression {{NAME}}: one path segment, no
// parameters or hash, not @data, not this/../.
func plainName(e *ast.Expression) string {
	if e == nil || len(e.Params) > 0 || (e.Hash != nil && len(e.Hash.Pairs) > 0) {
		return ""
	}
	pe, ok := e.Path.(*ast.PathExpression)
	if !ok || !simplePath(pe) {
		return ""
	}
	return pe.Parts[0]
}

func simplePath(pe *ast.PathExpression) bool {
	return !pe.Data && !pe.Scoped && pe.Depth == 0 && len(pe.Parts) == 1
}

// builtinHelpers are raymond's own helpers (registered globally by raymond).
var builtinHelpers = map[string]bool{
	"if": true, "unless": true, "with": true, "each": true, "log": true, "lookup": true,
	"equal": true, "ifGt": true, "ifLt": true, "ifEq": true, "ifMatchesRegexStr": true,
	"pluralize": true, "length": true,
}

func isHelper(name string) bool {
	if builtinHelpers[name] {
		return true
	}
	_, ok := sendGridHelperNames[name]
	return ok
}

// IsPermanent reports whether err from this package can never succeed on
// retry: a missing macro under the fail policy, a bad template, or content
// over its channel's limit.
func IsPermanent(err error) bool {
	var m *MissingError
	var t *TemplateError
	var l *LimitError
	return errors.As(err, &m) || errors.As(err, &t) || errors.As(err, &l)
}
