// Package condition compiles and evaluates the rule engine's conditions:
// expr-lang expressions (github.com/expr-lang/expr) over one documented,
// typed environment (Env), that decide whether a recipient gets an action
// (an action's config.condition) or any action of an event (the event's
// condition). docs/rules.md is the user's reference for the environment.
//
// A condition is compiled and type-checked once, when its action or event is
// saved (Compile: the result must be a bool, every name must exist in Env),
// and again when the rule is loaded; the compiled Program is cached with the
// rule and evaluated at planning for every (recipient, action). Its cost is
// bounded at both ends (see the limits below): the language has no loops
// but its predicates (all, any, filter, map…) over finite values, and this
// package refuses a predicate inside another, so an evaluation is linear in
// the size of the expression times the size of its input.
//
// The package is a leaf: it knows no table, channel or transport.
package condition

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Limits on one condition.
const (
	// MaxLen is the longest expression accepted, in bytes.
	MaxLen = 2048
	// MaxNodes bounds the expression's syntax tree (expr.MaxNodes): what
	// one evaluation can do is at most this many steps per input element.
	MaxNodes = 500
	// MemoryBudget bounds what one evaluation may allocate (ranges such as
	// 1..1000000, repeat, the results of map and filter), in expr's units
	// (elements); past it the evaluation fails with a runtime error.
	MemoryBudget = 100_000
)

// Env is the environment a condition sees. The expr tags are the names an
// expression uses (recipient.locale, notification.data.amount).
type Env struct {
	Recipient    Recipient    `expr:"recipient"`
	Notification Notification `expr:"notification"`
	Collection   Ref          `expr:"collection"`
	Event        Ref          `expr:"event"`
	// Now is the planning time, in UTC (now.Hour(), now.Weekday()); a
	// recipient's local time is now.In(timezone(recipient.timezone)) when
	// recipient.timezone is set.
	Now time.Time `expr:"now"`
}

// Recipient is one recipient of the notification, as the request gave it.
// Absent fields are empty strings, empty lists and an empty map.
type Recipient struct {
	ID       string            `expr:"id"`
	Email    string            `expr:"email"`
	Tos      []Address         `expr:"tos"`
	Ccs      []Address         `expr:"ccs"`
	Bccs     []Address         `expr:"bccs"`
	Phone    string            `expr:"phone"`
	PushID   string            `expr:"pushId"`
	Locale   string            `expr:"locale"`
	Timezone string            `expr:"timezone"`
	Macros   map[string]string `expr:"macros"`
}

// Address is an email address of tos, ccs or bccs.
type Address struct {
	Email string `expr:"email"`
	Name  string `expr:"name"`
}

// Notification is the notification being planned.
type Notification struct {
	Name        string            `expr:"name"`
	Source      string            `expr:"source"` // queue or api
	Correlation map[string]string `expr:"correlation"`
	Tenant      string            `expr:"tenant"`
	EntityID    string            `expr:"entityId"`
	// Data is the notification's free-form data object (JSON: numbers are
	// float64, objects map[string]any, arrays []any); its members' types are
	// known only at run time, so a type mismatch there is a runtime error.
	Data map[string]any `expr:"data"`
}

// Ref names a collection or an event.
type Ref struct {
	ID   int64  `expr:"id"`
	Name string `expr:"name"`
}

// Error is why an expression does not compile, or failed at run time: the
// message and the 1-based position in the expression (Line 0 when expr
// gave none).
type Error struct {
	Message      string
	Line, Column int
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Message
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Program is a compiled condition. It is immutable and safe for concurrent
// use.
type Program struct {
	src string
	p   *vm.Program
}

// String is the expression's source.
func (p *Program) String() string { return p.src }

// Compile parses and type-checks src against Env. The error is an *Error
// naming the position of the problem.
func Compile(src string) (prog *Program, err error) {
	// Conditions are tenants' input, saved over the API: a panic in the
	// compiler on some pathological expression is the expression's error,
	// never a 500.
	defer func() {
		if r := recover(); r != nil {
			prog, err = nil, &Error{Message: fmt.Sprintf("cannot be compiled: %v", r)}
		}
	}()
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Message: "is empty"}
	}
	if len(src) > MaxLen {
		return nil, &Error{Message: fmt.Sprintf("is %d bytes; the limit is %d", len(src), MaxLen)}
	}
	nest := &nesting{src: src}
	p, err := expr.Compile(src,
		expr.Env(Env{}),
		expr.AsBool(),
		expr.MaxNodes(MaxNodes),
		// now is the environment's planning time, not the wall clock, so a
		// condition decides the same way for every recipient of a batch.
		expr.DisableBuiltin("now"),
		expr.Patch(nest),
	)
	if err != nil {
		return nil, compileError(err)
	}
	if nest.err != nil {
		return nil, nest.err
	}
	return &Program{src: src, p: p}, nil
}

// Eval runs p on env. A runtime error (a type mismatch in data, the memory
// budget exceeded) is an *Error; it never panics.
func (p *Program) Eval(env Env) (bool, error) {
	if env.Recipient.Macros == nil {
		env.Recipient.Macros = map[string]string{}
	}
	if env.Notification.Data == nil {
		env.Notification.Data = map[string]any{}
	}
	if env.Notification.Correlation == nil {
		env.Notification.Correlation = map[string]string{}
	}
	// A VM per evaluation: a VM is not safe for concurrent use, and its
	// budget counts from zero on each Run.
	machine := vm.VM{MemoryBudget: MemoryBudget}
	out, err := machine.Run(p.p, env)
	if err != nil {
		return false, compileError(err)
	}
	b, ok := out.(bool)
	if !ok { // AsBool makes this unreachable but for a nil result
		return false, &Error{Message: fmt.Sprintf("the result is %T, not a bool", out)}
	}
	return b, nil
}

// FromMacro is the expression equal to the old object condition {macro,
// equals}: the recipient's macro must equal the value exactly (a missing
// macro is "", as before).
func FromMacro(macro, equals string) string {
	return "recipient.macros[" + strconv.Quote(macro) + "] == " + strconv.Quote(equals)
}

// compileError turns expr's error into an *Error with a 1-based position.
func compileError(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		// Type names are the Go ones (condition.Recipient): the package
		// prefix means nothing to the user.
		e := &Error{Message: strings.ReplaceAll(fe.Message, "condition.", "")}
		if fe.Line > 0 {
			e.Line, e.Column = fe.Line, fe.Column+1
		}
		return e
	}
	return &Error{Message: err.Error()}
}

// nesting refuses a predicate (the body of all, any, filter, map, …) inside
// another: with one level, an evaluation is linear in its input; with two,
// quadratic in a data array of thousands of elements.
type nesting struct {
	src string
	err *Error
}

// Visit implements ast.Visitor.
func (n *nesting) Visit(node *ast.Node) {
	pred, ok := (*node).(*ast.PredicateNode)
	if !ok || n.err != nil {
		return
	}
	if inner := ast.Find(pred.Node, func(x ast.Node) bool { _, ok := x.(*ast.PredicateNode); return ok }); inner != nil {
		fe := (&file.Error{Location: inner.Location()}).Bind(file.NewSource(n.src))
		n.err = &Error{Message: "a predicate inside a predicate (a loop in a loop) is not allowed", Line: fe.Line, Column: fe.Column + 1}
	}
}
