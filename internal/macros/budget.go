package macros

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailgun/raymond/v2"
)

// A Budget is what one message's render may spend: every field rendered
// through it (subject, html, text, …) shares its output, steps and deadline,
// so a message cannot multiply a limit by its number of fields. Use one
// Budget per message, from one goroutine.
//
// raymond evaluates a template without a context or a hook, so the budget
// is enforced from the places the package controls: every helper is the
// package's own (raymond's global ones are shadowed per template), each of
// them counts a step, checks the deadline and the nesting depth, and
// accounts for the bytes its block produced; a printed macro value counts
// its bytes as raymond stringifies it. Only literal template text runs
// between two checks, and that is bounded by MaxTemplateBytes. A limit
// stops the evaluation with a panic that raymond turns into the render's
// error.
type Budget struct {
	lim      RenderLimits
	now      func() time.Time
	deadline time.Time
	steps    int
	depth    int
	produced int // bytes of output so far, conservatively
	err      *LimitError
	// extra are values a template sees beside the macros (a digest's
	// items and count: With), nested maps and lists of them.
	extra map[string]any
}

// With makes every render within b also see extra's values under their
// names (beside the macros, which they shadow), and returns b: a digest's
// template iterates items with {{#each items}} and prints {{count}}.
// Strings anywhere in extra print within the budget, as macros do.
func (b *Budget) With(extra map[string]any) *Budget {
	b.extra = extra
	return b
}

// wrap makes the strings of v, at any depth, budget-counted values.
func (b *Budget) wrap(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return ""
		}
		return value{s: x, b: b}
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, s := range x {
			out[k] = b.wrap(s)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = b.wrap(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = b.wrap(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = b.wrap(e)
		}
		return out
	}
	return v
}

// NewBudget starts the budget of one message's render; its clock starts now.
func NewBudget(lim RenderLimits) *Budget {
	lim = lim.WithDefaults()
	return &Budget{lim: lim, now: time.Now, deadline: time.Now().Add(lim.Timeout)}
}

// Render renders tmpl with vars within b, through the shared cache of
// compiled templates; see the package-level Render.
func (b *Budget) Render(tmpl string, vars map[string]string, mode Mode, missing string) (string, error) {
	return shared.RenderWithin(b, tmpl, vars, mode, missing)
}

// checkSource refuses a template source over MaxTemplateBytes before it is
// compiled.
func (b *Budget) checkSource(src string) error {
	if len(src) > b.lim.MaxTemplateBytes {
		return b.fail(b.lim.MaxTemplateBytes, len(src), "template is %d bytes, more than %d (templates.maxSize)", len(src), b.lim.MaxTemplateBytes)
	}
	return nil
}

// fail records the first limit the render went over.
func (b *Budget) fail(limit, actual int, format string, args ...any) *LimitError {
	if b.err == nil {
		b.err = &LimitError{What: WhatRender, Limit: limit, Actual: actual, Reason: fmt.Sprintf(format, args...)}
	}
	return b.err
}

// check reports the first limit hit, counting one step and looking at the
// clock.
func (b *Budget) check() *LimitError {
	if b.err != nil {
		return b.err
	}
	b.steps++
	if b.steps > b.lim.MaxSteps {
		return b.fail(b.lim.MaxSteps, b.steps, "more than %d steps (templates.maxSteps): a loop runs too often", b.lim.MaxSteps)
	}
	if b.now().After(b.deadline) {
		return b.fail(int(b.lim.Timeout.Milliseconds()), 0, "took longer than %s (templates.renderTimeout)", b.lim.Timeout)
	}
	return nil
}

// step is check for helpers: a limit stops the evaluation. raymond recovers
// a panic carrying an error and returns it from Exec.
func (b *Budget) step() {
	if err := b.check(); err != nil {
		panic(err)
	}
}

// produce accounts n more bytes of output.
func (b *Budget) produce(n int) *LimitError {
	if n <= 0 || b.err != nil {
		return b.err
	}
	b.produced += n
	if b.produced > b.lim.MaxOutputBytes {
		return b.fail(b.lim.MaxOutputBytes, b.produced, "output exceeds %d bytes (templates.maxOutput)", b.lim.MaxOutputBytes)
	}
	return nil
}

// block runs fn (a block's body or {{else}}) one level deeper and accounts
// for the bytes it adds beyond those already counted inside it (values and
// nested blocks): its literal text.
func (b *Budget) block(fn func() string) string {
	b.step()
	b.depth++
	defer func() { b.depth-- }()
	if b.depth > b.lim.MaxDepth {
		panic(b.fail(b.lim.MaxDepth, b.depth, "blocks nested deeper than %d (templates.maxDepth)", b.lim.MaxDepth))
	}
	before := b.produced
	s := fn()
	if err := b.produce(len(s) - (b.produced - before)); err != nil {
		panic(err)
	}
	return s
}

// emit accounts a helper's printed output.
func (b *Budget) emit(s string) string {
	if err := b.produce(len(s)); err != nil {
		panic(err)
	}
	return s
}

// value is a macro value in the render context. raymond prints it through
// String, which is where its bytes are counted; fmt recovers a panic in
// String, so a limit there prints nothing more and the next helper or the
// end of the render reports it. Empty values stay plain "" so that falsy
// stays falsy in sections raymond evaluates itself.
type value struct {
	s string
	b *Budget
}

// String prints the value, within the budget.
func (v value) String() string {
	if v.b.check() != nil || v.b.produce(len(v.s)) != nil {
		return ""
	}
	return v.s
}

// Length keeps {{NAME.length}} working (raymond resolves it as a method).
func (v value) Length() int { return len(v.s) }

// context is the render context of vars: non-empty values counted as they
// are printed.
func (b *Budget) context(vars map[string]string, extra int) map[string]any {
	ctx := make(map[string]any, len(vars)+extra)
	for k, v := range vars {
		if v == "" {
			ctx[k] = ""
			continue
		}
		ctx[k] = value{s: v, b: b}
	}
	return ctx
}

// str is the string of a helper argument, without counting it: comparing
// a value is not printing it.
func str(a any) string {
	switch v := a.(type) {
	case value:
		return v.s
	case string:
		return v
	case nil:
		return ""
	}
	return raymond.Str(a)
}

func truthy(a any) bool {
	if v, ok := a.(value); ok {
		return v.s != ""
	}
	return raymond.IsTrue(a)
}

// maxRegexBytes bounds the pattern {{#ifMatchesRegexStr}} compiles.
const maxRegexBytes = 1024

// budgetKey is where a render's Budget sits in raymond's private data frame,
// which every helper can read (Options.DataFrame) and every nested frame
// copies. A template cannot name it: no handlebars identifier or [segment]
// can contain "]".
const budgetKey = "]budget"

// budgetOf is the Budget of the render o belongs to.
func budgetOf(o *raymond.Options) *Budget {
	b, _ := o.DataFrame().Get(budgetKey).(*Budget)
	if b == nil {
		panic(errors.New("macros: render without a budget")) // a bug: ExecuteWithin always sets it
	}
	return b
}

// helpers are every helper a template may call. They are registered on each
// compiled template once and find the render's Budget in its data frame.
// They shadow raymond's global ones, which know nothing of the budget, and
// two kinds of which reach outside the render: {{log}} writes its argument
// (a recipient's data, any macro value) to the process log, and the
// numeric and regex helpers log the values they cannot convert. Here
// {{log}} prints nothing and writes nowhere (actions refuse it at save:
// Check), and no helper logs.
func helpers() map[string]any {
	branch := func(o *raymond.Options, cond bool) any {
		if cond {
			return budgetOf(o).block(o.Fn)
		}
		return budgetOf(o).block(o.Inverse)
	}
	numeric := func(cmp func(x, y float64) bool) func(a, c any, o *raymond.Options) any {
		return func(a, c any, o *raymond.Options) any {
			x, errX := toFloat(a)
			y, errY := toFloat(c)
			return branch(o, errX == nil && errY == nil && cmp(x, y))
		}
	}
	h := map[string]any{
		"if": func(cond any, o *raymond.Options) any {
			return branch(o, includeZero(cond, o) || truthy(cond))
		},
		"unless": func(cond any, o *raymond.Options) any {
			return branch(o, !(includeZero(cond, o) || truthy(cond)))
		},
		"with": func(ctx any, o *raymond.Options) any {
			if truthy(ctx) {
				return budgetOf(o).block(func() string { return o.FnWith(ctx) })
			}
			return budgetOf(o).block(o.Inverse)
		},
		"each": func(ctx any, o *raymond.Options) any { return budgetOf(o).each(ctx, o) },
		"log":  func(...any) any { return "" },
		"lookup": func(obj any, field string, o *raymond.Options) any {
			budgetOf(o).step()
			return o.Eval(obj, field) // a value counts itself when printed
		},
		"equal": func(a, c any, o *raymond.Options) any {
			if str(a) == str(c) {
				return budgetOf(o).block(o.Fn)
			}
			return ""
		},
		"ifGt": numeric(func(x, y float64) bool { return x > y }),
		"ifLt": numeric(func(x, y float64) bool { return x < y }),
		"ifEq": numeric(func(x, y float64) bool { return x == y }),
		"ifMatchesRegexStr": func(a, c any, o *raymond.Options) any {
			budgetOf(o).step()
			pattern := str(a)
			if len(pattern) > maxRegexBytes {
				return budgetOf(o).block(o.Inverse)
			}
			re, err := regexp.Compile(pattern) // RE2: linear in the input
			return branch(o, err == nil && re.MatchString(str(c)))
		},
		"pluralize": func(count, plural, singular any, o *raymond.Options) any {
			budgetOf(o).step()
			if c, err := toFloat(count); err != nil || c <= 1 {
				return singular
			}
			return plural
		},
	}
	for name, fn := range sendGridHelpers(branch) {
		h[name] = fn
	}
	return h
}

// each is raymond's {{#each}} within the budget: every iteration is a step
// and its output is accounted as it is produced, so a loop over the macros
// inside another stops at the first limit instead of running to the end. Map
// keys are visited in sorted order (raymond's order is Go's random one).
// Block parameters get the value only (as |v|), not the key; @key has it.
func (b *Budget) each(ctx any, o *raymond.Options) any {
	if !truthy(ctx) {
		return b.block(o.Inverse)
	}
	var out strings.Builder
	iter := func(n, i int, key, item any) {
		f := o.NewDataFrame()
		f.Set("index", i)
		f.Set("key", key)
		f.Set("first", i == 0)
		f.Set("last", i == n-1)
		out.WriteString(b.block(func() string { return o.FnCtxData(item, f) }))
	}
	b.step()
	v := reflect.ValueOf(ctx)
	switch v.Kind() {
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for i, k := range keys {
			iter(len(keys), i, k.Interface(), v.MapIndex(k).Interface())
		}
	case reflect.Array, reflect.Slice:
		for i := range v.Len() {
			iter(v.Len(), i, nil, v.Index(i).Interface())
		}
	}
	return out.String()
}

// includeZero is raymond's includeZero=true: the number 0 counts as true.
func includeZero(cond any, o *raymond.Options) bool {
	z, ok := o.HashProp("includeZero").(bool)
	n, isInt := cond.(int)
	return ok && z && isInt && n == 0
}

func toFloat(a any) (float64, error) {
	switch v := a.(type) {
	case value:
		return strconv.ParseFloat(v.s, 64)
	case string:
		return strconv.ParseFloat(v, 64)
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	case int:
		return float64(v), nil
	case float64:
		return v, nil
	}
	return 0, fmt.Errorf("not a number: %T", a)
}
