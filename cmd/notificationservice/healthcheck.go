package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/notificationservice/notificationservice/internal/config"
)

// healthcheck asks the running service whether it is alive (/healthz) or
// ready (/readyz, with -ready) and fails unless it answers 200. It is the
// Dockerfile's HEALTHCHECK: the distroless image has no shell or curl.
//
//	notificationservice healthcheck [-ready] [-addr host:port] [-timeout 5s]
func healthcheck(cfg config.Config, args []string, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(errOut)
	ready := fs.Bool("ready", false, "check /readyz (database, migrations, queue) instead of /healthz (the process answers)")
	addr := fs.String("addr", cfg.HTTP.Addr, "the service's address (default: http.addr)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url, err := probeURL(*addr, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s %s", url, resp.Status, body)
	}
	fmt.Fprintf(out, "GET %s: %s\n", url, resp.Status)
	return nil
}

// probeURL is the URL of path on the server listening at addr. A wildcard
// listen address (0.0.0.0, ::, empty) is reached on loopback.
func probeURL(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("healthcheck: address %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
