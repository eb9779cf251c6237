package outcome

import (
	"context"
	"errors"
)

// StatusClientClosed is the status a request is answered (to nobody) and
// logged with when its client went away before the answer: nginx's 499
// "client closed request". It is no failure of the gateway's: logged at
// INFO, never as a 500.
const StatusClientClosed = 499

// ClientClosed reports whether err, the failure of the request whose
// context is ctx, is that request's client going away: ctx canceled with no
// cause of its own, and err that cancellation (errors.Is context.Canceled),
// not a fault that happened to come as the client gave up (a database
// that hung until the client's timeout is still the gateway's fault).
// (The HTTP server cancels a request's context so when its connection
// closes; serve's drain cancels the requests it gives up on with a cause,
// and a timeout is a deadline: neither is the client's doing.)
func ClientClosed(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled) && context.Cause(ctx) == context.Canceled
}
