package webhooks_test

import (
	"log/slog"
	"strconv"
	"testing"
)

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
