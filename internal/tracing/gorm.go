package tracing

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"
)

// maxStatementBytes caps the SQL text a span records. Statements carry
// placeholders, never values, so no recipient or secret reaches a span.
const maxStatementBytes = 2000

// GormPlugin returns a gorm plugin that records each statement as a client
// span ("db.query", "db.raw", ...) under the span in the statement's
// context. Statements without a recording span in their context (the
// relay's and the workers' idle polls) record nothing, so polling never
// fills the trace store with one-span traces. system is the db.system.name
// attribute: "postgresql" or "sqlite".
//
// This is a small callback rather than gorm.io/plugin/opentelemetry: that
// plugin resolves, but its tracing package imports the ClickHouse and MySQL
// drivers, which would be linked into the binary for nothing.
func (t *Tracing) GormPlugin(system string) gorm.Plugin {
	return &gormPlugin{tracer: t.tracer, system: system}
}

type gormPlugin struct {
	tracer trace.Tracer
	system string
}

const gormSpanKey = "notify:tracing:span"

func (p *gormPlugin) Name() string { return "notify:tracing" }

func (p *gormPlugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	for _, h := range []struct {
		op            string
		before, after func(name string, fn func(*gorm.DB)) error
	}{
		{"create", cb.Create().Before("gorm:create").Register, cb.Create().After("gorm:create").Register},
		{"query", cb.Query().Before("gorm:query").Register, cb.Query().After("gorm:query").Register},
		{"update", cb.Update().Before("gorm:update").Register, cb.Update().After("gorm:update").Register},
		{"delete", cb.Delete().Before("gorm:delete").Register, cb.Delete().After("gorm:delete").Register},
		{"row", cb.Row().Before("gorm:row").Register, cb.Row().After("gorm:row").Register},
		{"raw", cb.Raw().Before("gorm:raw").Register, cb.Raw().After("gorm:raw").Register},
	} {
		if err := h.before("notify:tracing:before_"+h.op, p.before(h.op)); err != nil {
			return err
		}
		if err := h.after("notify:tracing:after_"+h.op, p.after); err != nil {
			return err
		}
	}
	return nil
}

func (p *gormPlugin) before(op string) func(*gorm.DB) {
	name := "db." + op
	return func(db *gorm.DB) {
		ctx := db.Statement.Context
		if ctx == nil || !trace.SpanFromContext(ctx).IsRecording() {
			return
		}
		_, span := p.tracer.Start(ctx, name,
			trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(
				attribute.String("db.system.name", p.system),
				attribute.String("db.operation.name", op),
			))
		db.InstanceSet(gormSpanKey, span)
	}
}

func (p *gormPlugin) after(db *gorm.DB) {
	v, ok := db.InstanceGet(gormSpanKey)
	if !ok {
		return
	}
	span, ok := v.(trace.Span)
	if !ok {
		return
	}
	defer span.End()
	stmt := db.Statement.SQL.String()
	if len(stmt) > maxStatementBytes {
		stmt = stmt[:maxStatementBytes]
	}
	if table := db.Statement.Table; table != "" {
		span.SetAttributes(attribute.String("db.collection.name", table))
	}
	span.SetAttributes(
		attribute.String("db.query.text", stmt),
		attribute.Int64("db.response.rows_affected", db.RowsAffected),
	)
	if err := db.Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		span.RecordError(err)
		span.SetStatus(codes.Error, "database error")
	}
}
