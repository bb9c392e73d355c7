package macros

import (
	"fmt"

	"github.com/mailgun/raymond/v2/ast"
	"github.com/mailgun/raymond/v2/parser"
)

// Check refuses, before a template is stored, what can be decided without
// rendering it: a source over lim.MaxTemplateBytes, a template that does not
// parse (*TemplateError), and (*LimitError, What WhatTemplate) blocks
// nested deeper than lim.MaxDepth, an {{#each}} inside another {{#each}}
// (macros are flat strings, so an inner loop can only walk the macros again
// — @root, ../ — and multiplies the work by their number at each level), a
// partial ({{> name}}: none exist, and partials can recurse), and {{log}}
// (it writes to the service log, outside the message). What only a render
// can tell (output size, steps, time) the render's Budget enforces.
func Check(tmpl string, lim RenderLimits) (err error) {
	lim = lim.WithDefaults()
	if len(tmpl) > lim.MaxTemplateBytes {
		return &LimitError{What: WhatTemplate, Limit: lim.MaxTemplateBytes, Actual: len(tmpl),
			Reason: fmt.Sprintf("is %d bytes, more than %d (templates.maxSize)", len(tmpl), lim.MaxTemplateBytes)}
	}
	defer func() {
		if v := recover(); v != nil {
			err = &TemplateError{Err: fmt.Errorf("parser panicked: %v", v)}
		}
	}()
	prog, perr := parser.Parse(tmpl)
	if perr != nil {
		return &TemplateError{Err: perr}
	}
	c := checker{lim: lim}
	c.program(prog, 0, false)
	return c.err
}

type checker struct {
	lim RenderLimits
	err error
}

func (c *checker) refuse(limit, actual int, format string, args ...any) {
	if c.err == nil {
		c.err = &LimitError{What: WhatTemplate, Limit: limit, Actual: actual, Reason: fmt.Sprintf(format, args...)}
	}
}

func (c *checker) program(p *ast.Program, depth int, inEach bool) {
	if p == nil || c.err != nil {
		return
	}
	for _, n := range p.Body {
		switch s := n.(type) {
		case *ast.MustacheStatement:
			c.expr(s.Expression)
		case *ast.PartialStatement:
			c.refuse(0, 0, "uses a partial ({{> …}}): partials are not supported")
		case *ast.BlockStatement:
			c.expr(s.Expression)
			if depth+1 > c.lim.MaxDepth {
				c.refuse(c.lim.MaxDepth, depth+1, "nests blocks deeper than %d (templates.maxDepth)", c.lim.MaxDepth)
				return
			}
			each := s.Expression.HelperName() == "each"
			if each && inEach {
				c.refuse(0, 0, "has an {{#each}} inside another {{#each}}: macros are flat, so the inner loop only walks the macros again")
				return
			}
			c.program(s.Program, depth+1, inEach || each)
			c.program(s.Inverse, depth+1, inEach)
		}
	}
}

// expr refuses {{log}} wherever it is called: as a mustache, a block or a
// subexpression.
func (c *checker) expr(e *ast.Expression) {
	if e == nil || c.err != nil {
		return
	}
	if e.HelperName() == "log" {
		c.refuse(0, 0, "calls {{log}}, which would write recipients' data to the service log")
		return
	}
	var nodes []ast.Node
	nodes = append(nodes, e.Params...)
	if e.Hash != nil {
		for _, p := range e.Hash.Pairs {
			nodes = append(nodes, p.Val)
		}
	}
	for _, n := range nodes {
		switch x := n.(type) {
		case *ast.SubExpression:
			c.expr(x.Expression)
		case *ast.Expression:
			c.expr(x)
		}
	}
}
