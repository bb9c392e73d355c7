// Command notificationservice runs the notification service and its admin tasks.
//
//	notificationservice [-config FILE] [serve]        run the service (the default)
//	notificationservice migrate up|down|status        manage the schema
//	notificationservice token [flags]                 mint a JWT for local use
//	notificationservice dlq list|redrive [flags]      read or re-drive the dead-letter queue
//	notificationservice publish [flags] [JSON]        put a message on NotificationQueue
//	notificationservice healthcheck [-ready]          probe /healthz (or /readyz); exit 0 or 1
//	notificationservice version                       print the version
package main

import (
	// The zone database in the binary: recipients' IANA time zones must
	// resolve in a container without /usr/share/zoneinfo.
	_ "time/tzdata"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/notificationservice/notificationservice/internal/app"
	"github.com/notificationservice/notificationservice/internal/auth"
	"github.com/notificationservice/notificationservice/internal/config"
	"github.com/notificationservice/notificationservice/internal/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "notificationservice:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notificationservice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "config/config.yaml", "configuration file (missing file: built-in defaults)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd, rest := "serve", fs.Args()
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, version)
		return nil
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	switch cmd {
	case "serve":
		return serve(cfg, stderr)
	case "migrate":
		return migrate(cfg, rest, stdout)
	case "token":
		return token(cfg, rest, stdout, stderr)
	case "dlq":
		return dlq(cfg, rest, stdout, stderr)
	case "healthcheck":
		return healthcheck(cfg, rest, stdout, stderr)
	case "publish":
		return publish(cfg, rest, os.Stdin, stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate, token, dlq, publish, healthcheck or version)", cmd)
	}
}

func serve(cfg config.Config, logOut io.Writer) error {
	memLimit, gcPercent := applyRuntime(cfg.Runtime, os.LookupEnv)
	if err := cfg.CheckExposure(); err != nil {
		return err
	}
	if err := cfg.CheckWebhookExposure(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Closed after the app (defers run last first), so its last lines are written.
	out := app.NewLogOutput(logOut)
	defer func() { _ = out.Close() }()
	log := app.NewLogger(cfg.Log, out)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	var released int64
	if cfg.Runtime.ReleaseStartupCode {
		// Start-up (every package's init, configuration, migrations) is
		// done: its code pages need not stay resident.
		if released, err = app.ReleaseStartupCode(); err != nil {
			log.Warn("start-up code pages stay resident", "err", err)
		}
	}
	log.Info("notificationservice starting", "version", version, "postgres", cfg.Database.Postgres(), "outboxSink", cfg.Outbox.Sink,
		"memoryLimit", memLimit, "gcPercent", gcPercent, "startupCodeReleasedBytes", released)
	return a.Run(ctx)
}

// applyRuntime sets the Go runtime's soft memory limit from
// runtime.memoryLimit (0: none) and its GC target from runtime.gcPercent,
// and returns both as in force. GOMEMLIMIT and GOGC in the environment win:
// the runtime has applied them before main, and the operator who set them
// meant them.
func applyRuntime(r config.Runtime, lookupEnv func(string) (string, bool)) (memLimit int64, gcPercent int) {
	if _, set := lookupEnv("GOMEMLIMIT"); !set {
		limit := r.MemoryLimit
		if limit == 0 {
			limit = math.MaxInt64 // the runtime's own "no limit"
		}
		debug.SetMemoryLimit(limit)
	}
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(r.GCPercent)
	}
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	return debug.SetMemoryLimit(-1), int(gogc[0].Value.Uint64()) // -1 reads the limit without changing it
}

func migrate(cfg config.Config, args []string, out io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: migrate up|down|status")
	}
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer store.Close(db)
	switch args[0] {
	case "up":
		return store.Migrate(ctx, db, app.NewLogger(cfg.Log, out))
	case "down":
		v, err := store.MigrateDown(ctx, db)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "rolled back version %d\n", v)
		return nil
	case "status":
		st, err := store.Status(ctx, db)
		if err != nil {
			return err
		}
		for _, s := range st {
			state := "pending"
			if s.Applied {
				state = "applied"
			}
			fmt.Fprintf(out, "%05d  %-8s %s\n", s.Version, state, s.File)
		}
		return nil
	default:
		return fmt.Errorf("unknown migrate command %q (want up, down or status)", args[0])
	}
}

func token(cfg config.Config, args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(errOut)
	user := fs.String("user", "1", "user id (the sub claim)")
	roles := fs.String("roles", auth.RoleSuperAdmin, "comma-separated roles: "+strings.Join(auth.KnownRoles, ", "))
	channel := fs.String("channel", "CSR", "channel claim")
	collections := fs.String("collections", "", "comma-separated collection ids a non-super-admin may touch")
	ttl := fs.Duration("ttl", cfg.Auth.TokenTTL, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := auth.Principal{UserID: *user, Channel: *channel}
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			p.Roles = append(p.Roles, r)
		}
	}
	for _, c := range strings.Split(*collections, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		id, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return fmt.Errorf("token: -collections: %q is not an id", c)
		}
		p.Collections = append(p.Collections, id)
	}
	t, err := auth.Mint(cfg.Auth, p, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(out, t)
	return nil
}
