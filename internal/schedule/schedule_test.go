package schedule

import (
	"testing"
	"time"
)

func paris(t *testing.T) *time.Location {
	t.Helper()
	var z Zones
	loc, err := z.Load("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestDefer(t *testing.T) {
	p := paris(t)
	night := Window{Start: "21:00", End: "08:00"}
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name  string
		t     string
		loc   *time.Location
		w     Window
		want  string // RFC 3339 in UTC; "" when not held
		hours float64
	}{
		{"before the window", "2026-06-10T20:59:00+02:00", p, night, "", 0},
		{"at the start", "2026-06-10T21:00:00+02:00", p, night, "2026-06-11T06:00:00Z", 11},
		{"22:30 in summer", "2026-06-10T22:30:00+02:00", p, night, "2026-06-11T06:00:00Z", 9.5},
		{"after midnight", "2026-06-11T03:00:00+02:00", p, night, "2026-06-11T06:00:00Z", 5},
		{"at the end", "2026-06-11T08:00:00+02:00", p, night, "", 0},
		{"22:30 UTC is 00:30 in Paris", "2026-06-10T22:30:00Z", p, night, "2026-06-11T06:00:00Z", 7.5},
		{"UTC when no zone", "2026-06-10T22:30:00Z", nil, night, "2026-06-11T08:00:00Z", 9.5},
		{"a window inside one day", "2026-06-10T12:30:00+02:00", p, Window{"12:00", "14:00"}, "2026-06-10T12:00:00Z", 1.5},
		{"outside a window inside one day", "2026-06-10T22:30:00+02:00", p, Window{"12:00", "14:00"}, "", 0},
		{"the last day of the year", "2026-12-31T22:30:00+01:00", p, night, "2027-01-01T07:00:00Z", 9.5},
		// Spring forward: Sunday 29 March 2026, 02:00 CET → 03:00 CEST.
		{"22:30 the night the clocks go forward", "2026-03-28T22:30:00+01:00", p, night, "2026-03-29T06:00:00Z", 8.5},
		{"end in the skipped hour ends at the transition", "2026-03-29T01:30:00+01:00", p, Window{"21:00", "02:30"}, "2026-03-29T01:00:00Z", 0.5},
		{"start in the skipped hour", "2026-03-29T03:10:00+02:00", p, Window{"02:30", "04:00"}, "2026-03-29T02:00:00Z", 50.0 / 60},
		// Fall back: Sunday 25 October 2026, 03:00 CEST → 02:00 CET.
		{"22:30 the night the clocks go back", "2026-10-24T22:30:00+02:00", p, night, "2026-10-25T07:00:00Z", 10.5},
		{"end in the repeated hour ends at its first pass", "2026-10-25T01:30:00+02:00", p, Window{"21:00", "02:30"}, "2026-10-25T00:30:00Z", 1},
		{"the repeated hour's second pass, before end", "2026-10-25T02:15:00+01:00", p, Window{"21:00", "02:30"}, "", 0},
		{"start equal to end holds nothing", "2026-06-10T22:30:00+02:00", p, Window{"08:00", "08:00"}, "", 0},
		{"an invalid window holds nothing", "2026-06-10T22:30:00+02:00", p, Window{"25:00", "08:00"}, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			from := at(c.t)
			got, held := Defer(from, c.loc, c.w)
			if c.want == "" {
				if held {
					t.Fatalf("held until %s, want not held", got.UTC().Format(time.RFC3339))
				}
				return
			}
			if !held {
				t.Fatalf("not held, want until %s", c.want)
			}
			if !got.Equal(at(c.want)) {
				t.Fatalf("until %s (%s), want %s", got.UTC().Format(time.RFC3339), got.In(p), c.want)
			}
			if h := got.Sub(from).Hours(); h != c.hours {
				t.Fatalf("held %.2f h, want %.2f", h, c.hours)
			}
		})
	}
}

func TestWindowValidate(t *testing.T) {
	cases := []struct {
		w    Window
		want []string // fields
	}{
		{Window{"21:00", "08:00"}, nil},
		{Window{"00:00", "23:59"}, nil},
		{Window{"8:00", "08:00"}, []string{"start"}},
		{Window{"21:00", "24:00"}, []string{"end"}},
		{Window{"21:60", "x"}, []string{"start", "end"}},
		{Window{"", ""}, []string{"start", "end"}},
		{Window{"08:00", "08:00"}, []string{"end"}},
	}
	for _, c := range cases {
		errs := c.w.Validate()
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%v: errors %v, want fields %v", c.w, errs, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%v: errors %v, want fields %v", c.w, errs, c.want)
			}
		}
	}
}

func TestZones(t *testing.T) {
	var z Zones
	for _, bad := range []string{"Local", "Mars/Olympus", "../etc/passwd"} {
		if _, err := z.Load(bad); err == nil {
			t.Fatalf("Load(%q) succeeded", bad)
		}
	}
	if loc, err := z.Load(""); err != nil || loc != time.UTC {
		t.Fatalf("Load(\"\") = %v, %v; want UTC", loc, err)
	}
	a, _ := z.Load("Europe/Paris")
	b, _ := z.Load("Europe/Paris")
	if a != b {
		t.Fatal("a zone was loaded twice")
	}
}
