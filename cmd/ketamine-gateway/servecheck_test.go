package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// TestServeRefusesValues: out-of-range flag values and environment values
// that do not parse are refused (exit 2) before the database is opened,
// naming the flag or the variable, never echoing a URL.
func TestServeRefusesValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"base URL not a URL", []string{"--base-url", "notaurl"}, nil, "--base-url: must be an absolute http or https URL"},
		{"base URL with a query", nil, map[string]string{"GATEWAY_BASE_URL": "http://gw.example.org/fhir?x=1#frag"},
			"GATEWAY_BASE_URL: must not have a query (?) or a fragment (#)"},
		{"base URL with credentials", []string{"--base-url", "https://u:secret-pw@gw.example.org/fhir"}, nil, "--base-url: must not hold credentials"},
		{"retention in days", nil, map[string]string{"GATEWAY_JOB_RETENTION": "7d"},
			`GATEWAY_JOB_RETENTION: "7d" is not a duration: write it with the units h, m and s (168h for 7 days)`},
		{"retention forever", nil, map[string]string{"GATEWAY_JOB_RETENTION": "forever"}, "GATEWAY_JOB_RETENTION"},
		{"retention zero", nil, map[string]string{"GATEWAY_JOB_RETENTION": "0s"}, `GATEWAY_JOB_RETENTION: "0s": must be positive`},
		{"negative retention", []string{"--job-retention=-1h"}, nil, "--job-retention must be a positive duration"},
		{"no job workers", []string{"--job-workers", "0"}, nil, "--job-workers must be from 1 to 64"},
		{"negative job workers", []string{"--job-workers", "-1"}, nil, "--job-workers must be from 1 to 64"},
		{"zero lease", []string{"--job-lease", "0s"}, nil, "--job-lease must be at least 1s"},
		{"zero body", []string{"--max-body", "0"}, nil, "--max-body must be a positive number of bytes"},
		{"negative body", []string{"--max-body", "-5"}, nil, "--max-body must be a positive number of bytes"},
		{"zero import", []string{"--max-import", "0"}, nil, "--max-import must be a positive number of bytes"},
		{"zero entries", []string{"--max-entries", "0"}, nil, "--max-entries must be a positive number of Bundle entries"},
		{"negative rate", []string{"--rate-limit", "-1"}, nil, "--rate-limit must be requests per second, 0 to turn it off"},
		{"CORS origin with a path", []string{"--cors-origins", "https://app.example/"}, nil, "--cors-origins: CORS origin"},
		{"CORS without authentication", []string{"--cors-origins", "https://app.example"}, nil, "authentication is not configured"},
		{"CORS origin without a scheme", nil, map[string]string{"GATEWAY_CORS_ORIGINS": "https://a.example, app.example"}, "GATEWAY_CORS_ORIGINS: CORS origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			getenv := func(k string) string { return tc.env[k] }
			// The guard only stops a serve that wrongly started.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			args := append([]string{"ketamine-gateway", "serve", "--addr", "127.0.0.1:0", "--db", db}, tc.args...)
			err := run(ctx, args, getenv, strings.NewReader(""), &out, &errb)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(ee.msg, tc.want) {
				t.Fatalf("serve %v = %v, want exit 2 saying %q", tc.args, err, tc.want)
			}
			if strings.Contains(ee.msg, "secret-pw") {
				t.Errorf("the refusal echoes the URL's credentials: %q", ee.msg)
			}
			if _, err := os.Stat(db); !os.IsNotExist(err) {
				t.Errorf("serve, refused, created its database: %v", err)
			}
		})
	}
}

// TestTokenSecretTooShort: a GATEWAY_TOKEN_SECRET too short is reported
// under its own name (not as a --config error about a key the file does
// not have), saying how to make one, without echoing it.
func TestTokenSecretTooShort(t *testing.T) {
	fc := &fileConfig{Auth: &auth.Config{TokenURL: "https://gw/auth/token", Clients: []auth.Client{{ID: "a", Tenant: "t"}}}}
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	_, err := authServer(fc, func(k string) string {
		if k == "GATEWAY_TOKEN_SECRET" {
			return secret
		}
		return ""
	}, &replayCache{})
	want := "GATEWAY_TOKEN_SECRET: 16 bytes after base64 decoding, want at least 32: generate one with 'head -c 32 /dev/urandom | base64'"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), secret) {
		t.Errorf("authServer = %v, want %q", err, want)
	}
}

// TestDrainAtOnce: on SIGTERM the delivery worker is told to stop while
// the HTTP server drains, not after it, so a stop takes one drain budget,
// not the HTTP drain plus the worker's.
func TestDrainAtOnce(t *testing.T) {
	stopped := make(chan struct{})
	workerDone := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a guard: both finish at once
	defer cancel()
	err := drain(ctx, func(ctx context.Context) error {
		select {
		case <-stopped: // the worker is draining meanwhile
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func() {}, func() { close(stopped); workerDone <- nil }, workerDone)
	if err != nil {
		t.Errorf("drain = %v, want the HTTP server and the worker drained together", err)
	}
}

// TestDrainCancelsRequests: when the drain deadline passes with requests
// still in flight (their database work waits on a host that stopped
// answering), their contexts are cancelled, so that work ends and the
// stop does not outlast the drain budget; drain still reports the
// deadline.
func TestDrainCancelsRequests(t *testing.T) {
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	finished := make(chan struct{})
	go func() { <-reqCtx.Done(); close(finished) }() // a request that ends only when its context does
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	workerDone := make(chan error, 1)
	err := drain(expired, func(ctx context.Context) error {
		select {
		case <-finished:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, cancelRequests, func() { workerDone <- nil }, workerDone)
	select {
	case <-finished:
	default:
		t.Error("drain returned with the request still running: its context was not cancelled at the deadline")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drain = %v, want the deadline reported", err)
	}
}
