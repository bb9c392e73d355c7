package macros_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/notificationservice/notificationservice/internal/macros"
)

// benchHTML is a typical transactional email body: about 1 KB of HTML with
// five macros and a guarded section.
var benchHTML = `<html><body><table width="600"><tr><td>
<h1>Welcome, {{FNAME}}!</h1>
<p>Thanks for joining {{COMPANY}}. Your account <b>{{EMAIL}}</b> is ready.</p>
{{#if PLAN}}<p>You are on the <i>{{PLAN}}</i> plan.</p>{{/if}}
<p>Confirm your address within 48 hours: <a href="https://example.test/confirm?code={{CODE}}">confirm</a>.</p>
<p style="color:#888;font-size:12px">` + strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 10) + `</p>
<p>— The {{COMPANY}} team</p></td></tr></table></body></html>`

var benchVars = map[string]string{
	"FNAME": "Jane <Doe>", "COMPANY": "Acme & Sons", "EMAIL": "jane@example.test", "PLAN": "pro", "CODE": "a1b2c3",
}

// BenchmarkRender is the steady state: the compiled template comes from the
// cache, so each op is one evaluation. templates/s is the figure in
// docs/benchmarks.md.
func BenchmarkRender(b *testing.B) {
	r := macros.New(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Render(benchHTML, benchVars, macros.HTML, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "templates/s")
}

// BenchmarkRenderUncached is the baseline for the cache: every op parses the
// template afresh (a distinct source each time defeats the cache).
func BenchmarkRenderUncached(b *testing.B) {
	r := macros.New(1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := r.Render(benchHTML+strconv.Itoa(i), benchVars, macros.HTML, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "templates/s")
}

// BenchmarkRenderSMS is a short text template, the SMS case.
func BenchmarkRenderSMS(b *testing.B) {
	r := macros.New(16)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render("Hi {{FNAME}}, your {{COMPANY}} code is {{CODE}}", benchVars, macros.Text, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "templates/s")
}
