package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
)

// putEventsAPI is the one EventBridge call the sink makes.
type putEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// EventBridge publishes entries with PutEvents through aws-sdk-go-v2.
type EventBridge struct {
	client putEventsAPI
}

// EventBridgeConfig is what the EventBridge sink needs.
type EventBridgeConfig struct {
	Region string
	// Endpoint, when set, replaces the regional endpoint (a VPC endpoint,
	// LocalStack, or a test fake).
	Endpoint string
	// Timeout bounds one HTTP attempt; the relay also bounds each call.
	Timeout time.Duration
	// Credentials, when nil, come from the standard AWS chain: environment,
	// shared config and credentials files (AWS_PROFILE), web identity, ECS
	// and EC2 instance roles.
	Credentials aws.CredentialsProvider
}

// NewEventBridge builds the sink. The SDK's own retries are off: the relay
// retries with its own backoff and, after a partial failure, sends only the
// entries that failed, which an SDK-level retry of the whole call would not.
func NewEventBridge(ctx context.Context, cfg EventBridgeConfig) (*EventBridge, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cfg.Region),
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(cfg.Timeout)),
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("outbox: aws config: %w", err)
	}
	client := eventbridge.NewFromConfig(awsCfg, func(o *eventbridge.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &EventBridge{client: client}, nil
}

// Put sends entries in one PutEvents call.
func (s *EventBridge) Put(ctx context.Context, entries []Entry) ([]error, error) {
	in := &eventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(entries))}
	for i, e := range entries {
		in.Entries[i] = types.PutEventsRequestEntry{
			Source:       aws.String(e.Source),
			DetailType:   aws.String(e.DetailType),
			Detail:       aws.String(e.Detail),
			EventBusName: aws.String(e.EventBusName),
			Time:         aws.Time(e.Time),
		}
	}
	out, err := s.client.PutEvents(ctx, in)
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && rejectedCode(apiErr.ErrorCode()) {
			return nil, fmt.Errorf("%w: eventbridge: %w", ErrRejected, err)
		}
		return nil, fmt.Errorf("outbox: eventbridge: %w", err)
	}
	if len(out.Entries) != len(entries) {
		// The API promises one result per entry; without that nothing can be
		// matched up, so the whole call is retried.
		return nil, fmt.Errorf("outbox: eventbridge: %d results for %d entries", len(out.Entries), len(entries))
	}
	errs := make([]error, len(entries))
	for i, r := range out.Entries {
		if r.ErrorCode != nil && *r.ErrorCode != "" {
			errs[i] = &EntryError{Code: *r.ErrorCode, Message: aws.ToString(r.ErrorMessage)}
		}
	}
	return errs, nil
}

// rejectedCode reports whether a whole-call error says the request itself is
// invalid. Throttling, 5xx and auth errors are not: they pass with time or
// with an operator's fix, so the relay waits instead of parking anything.
func rejectedCode(code string) bool {
	switch code {
	case "ValidationException", "SerializationException", "InvalidParameterValueException":
		return true
	}
	return false
}
