package keyrelease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retries of one call (Entra, attestation, Key Vault): a pod that starts while a service hiccups still unseals, and
// one that cannot reach a service gives up within about a minute and is restarted by Kubernetes.
const (
	maxAttempts     = 5
	firstRetryDelay = time.Second
	maxRetryDelay   = 16 * time.Second
	// maxResponseBytes bounds what is read from a service: a release response is a few kilobytes.
	maxResponseBytes = 1 << 20
)

// ServiceError is an answer other than success from Entra or Key Vault, with the service's own error code and
// message (they never contain a secret).
type ServiceError struct {
	Service string
	Status  int
	Code    string
	Message string
	// Hint says what such an answer usually means here.
	Hint string
	// RetryAfter is the service's Retry-After, when it sent one.
	RetryAfter time.Duration
}

func (e *ServiceError) Error() string {
	text := fmt.Sprintf("%s answered %d %s", e.Service, e.Status, http.StatusText(e.Status))
	if e.Code != "" || e.Message != "" {
		text += fmt.Sprintf(" (%s: %s)", e.Code, e.Message)
	}
	if e.Hint != "" {
		text += ": " + e.Hint
	}
	return text
}

// Temporary tells whether another attempt may succeed: throttling, timeouts and server errors. 4xx answers such as
// 400, 401 and 403 (a refused release, a policy the attestation does not satisfy) are final.
func (e *ServiceError) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// permanentError marks a failure that another attempt cannot fix (a malformed answer, a failed check).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

func retryable(err error) bool {
	var service *ServiceError
	if errors.As(err, &service) {
		return service.Temporary()
	}
	var final permanentError
	return !errors.As(err, &final)
}

// retrier runs a call up to maxAttempts times with exponential backoff, honouring Retry-After up to maxRetryDelay.
type retrier struct {
	sleep func(context.Context, time.Duration) error
	logf  func(string, ...any)
}

func (r retrier) do(ctx context.Context, what string, call func(context.Context) error) error {
	delay := firstRetryDelay
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || attempt == maxAttempts || ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("%s (attempt %d of %d): %w", what, attempt, maxAttempts, err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		wait := delay
		var service *ServiceError
		if errors.As(err, &service) && service.RetryAfter > 0 {
			wait = min(service.RetryAfter, maxRetryDelay)
		}
		r.logf("%s failed (attempt %d of %d), retrying in %s: %v", what, attempt, maxAttempts, wait, err)
		if sleepErr := r.sleep(ctx, wait); sleepErr != nil {
			return fmt.Errorf("%s: %w (after attempt %d: %v)", what, sleepErr, attempt, err)
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// readResponse reads a bounded body; a status other than 200 becomes a *ServiceError built by describe.
func readResponse(response *http.Response, service string, describe func(*ServiceError, []byte)) ([]byte, error) {
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s's answer: %w", service, err)
	}
	if len(body) > maxResponseBytes {
		return nil, permanent(fmt.Errorf("%s's answer is larger than %d bytes", service, maxResponseBytes))
	}
	if response.StatusCode != http.StatusOK {
		serviceError := &ServiceError{Service: service, Status: response.StatusCode}
		if seconds, err := strconv.Atoi(strings.TrimSpace(response.Header.Get("Retry-After"))); err == nil && seconds > 0 {
			serviceError.RetryAfter = time.Duration(seconds) * time.Second
		}
		describe(serviceError, body)
		return nil, serviceError
	}
	return body, nil
}

// shorten keeps a service's message readable in a log line.
func shorten(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 300 {
		return text[:300] + "…"
	}
	return text
}
