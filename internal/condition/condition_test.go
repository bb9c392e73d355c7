package condition_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/notificationservice/notificationservice/internal/condition"
)

func env() condition.Env {
	return condition.Env{
		Recipient: condition.Recipient{ID: "u1", Email: "ann@example.test", Locale: "fr_CA", Timezone: "Europe/Paris",
			Tos: []condition.Address{{Email: "ann@example.test", Name: "Ann"}}, Macros: map[string]string{"PLAN": "pro"}},
		Notification: condition.Notification{Name: "ORDER_SHIPPED", Source: "api", Tenant: "acme", EntityID: "order-7",
			Correlation: map[string]string{"traceId": "t1"}, Data: map[string]any{"amount": float64(150), "tags": []any{"vip"}}},
		Collection: condition.Ref{ID: 3, Name: "shop"},
		Event:      condition.Ref{ID: 9, Name: "ORDER_SHIPPED"},
		Now:        time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC),
	}
}

// Every name of the documented environment, and the documented examples,
// evaluate as docs/rules.md says.
func TestEnvironment(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want bool
	}{
		{`recipient.locale startsWith "fr"`, true},
		{`recipient.macros.PLAN in ["pro", "team"]`, true},
		{`recipient.macros.PLAN in ["team"]`, false},
		{`notification.data.amount > 100`, true},
		{`notification.data.amount > 200`, false},
		{`recipient.id == "u1" && recipient.email endsWith "@example.test"`, true},
		{`recipient.tos[0].name == "Ann" && len(recipient.ccs) == 0 && len(recipient.bccs) == 0`, true},
		{`recipient.phone == "" && recipient.pushId == "" && recipient.timezone == "Europe/Paris"`, true},
		{`notification.name == "ORDER_SHIPPED" && notification.source == "api"`, true},
		{`notification.tenant == "acme" && notification.entityId == "order-7"`, true},
		{`notification.correlation.traceId == "t1"`, true},
		{`"vip" in notification.data.tags`, true},
		{`notification.data.missing == nil`, true},
		{`collection.id == 3 && collection.name == "shop" && event.id == 9 && event.name == "ORDER_SHIPPED"`, true},
		{`now.Hour() == 22 && now.In(timezone(recipient.timezone)).Hour() == 23`, true},
		{`recipient.macros.MISSING == ""`, true},
		{`any(recipient.tos, .email contains "ann")`, true},
		// docs/rules.md's other examples.
		{`(notification.data.missing ?? 0) > 100`, false},
		{`(notification.data.amount ?? 0) > 100`, true},
		{`recipient.id != "" && notification.tenant == "acme"`, true},
		{`any(recipient.tos, .email endsWith "@example.test")`, true},
		{`now.In(timezone(recipient.timezone)).Hour() < 22`, false},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := condition.Compile(tc.expr)
			require.NoError(t, err)
			got, err := p.Eval(env())
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.expr, p.String())
		})
	}
}

// What cannot be compiled is refused with its position.
func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		expr, msg    string
		line, column int
	}{
		{`recipient.locale`, "expected bool", 0, 0},
		{`recipient.nope == "x"`, "Recipient has no field nope", 1, 11},
		{`recipient.locale startsWith`, "unexpected token", 1, 0},
		{"true &&\n  recipient.locale > 3", "invalid operation", 2, 0},
		{`all(recipient.tos, any(recipient.ccs, true))`, "a predicate inside a predicate", 1, 39},
		{`   `, "is empty", 0, 0},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := condition.Compile(tc.expr)
			var ce *condition.Error
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Contains(t, ce.Message, tc.msg)
			require.Equal(t, tc.line, ce.Line, "%v", err)
			if tc.column > 0 {
				require.Equal(t, tc.column, ce.Column, "%v", err)
			}
		})
	}
	_, err := condition.Compile(string(make([]byte, condition.MaxLen+1)))
	require.ErrorContains(t, err, "the limit is 2048")
	// Bounded at save: too many nodes, and pathological nesting, are
	// errors, not panics.
	_, err = condition.Compile("1" + strings.Repeat("+1", 600) + ">0")
	require.ErrorContains(t, err, "exceeds maximum allowed nodes")
	_, err = condition.Compile(strings.Repeat("(", 1000) + "true" + strings.Repeat(")", 1000))
	require.NoError(t, err, "deep parentheses are one node")
	_, err = condition.Compile(strings.Repeat("!", 1000) + "true")
	require.ErrorContains(t, err, "exceeds maximum allowed nodes")
}

// A value of the wrong type at run time, or an evaluation over its budget,
// is an error, never a panic.
func TestRuntimeErrors(t *testing.T) {
	e := env()
	e.Notification.Data = map[string]any{"amount": "lots"}
	p, err := condition.Compile(`notification.data.amount > 100`)
	require.NoError(t, err)
	_, err = p.Eval(e)
	var ce *condition.Error
	require.ErrorAs(t, err, &ce)
	require.Contains(t, ce.Message, "invalid operation")

	p, err = condition.Compile(`len(1..10000000) > 0`)
	require.NoError(t, err)
	_, err = p.Eval(env())
	require.ErrorContains(t, err, "memory budget exceeded")
}

// The old object form translates to an expression with the same meaning.
func TestFromMacro(t *testing.T) {
	src := condition.FromMacro("PLAN", `pro "x"`)
	require.Equal(t, `recipient.macros["PLAN"] == "pro \"x\""`, src)
	p, err := condition.Compile(src)
	require.NoError(t, err)
	e := env()
	ok, err := p.Eval(e)
	require.NoError(t, err)
	require.False(t, ok)
	e.Recipient.Macros["PLAN"] = `pro "x"`
	ok, err = p.Eval(e)
	require.NoError(t, err)
	require.True(t, ok)
	e.Recipient.Macros = nil // a recipient without macros: "" as before
	ok, err = mustCompile(t, condition.FromMacro("PLAN", "")).Eval(e)
	require.NoError(t, err)
	require.True(t, ok)
}

func mustCompile(t *testing.T, src string) *condition.Program {
	t.Helper()
	p, err := condition.Compile(src)
	require.NoError(t, err)
	return p
}
