package hub

import (
	"context"
	"time"

	"github.com/feedgate/feedgate/store"
)

// RetryNow makes a callback subscription's delivery due at once, cutting
// short the back-off of a failing one (an operator who fixed the
// subscriber does not wait for the next retry). The node that works the
// job next makes the attempt: this one at once when it delivers, another
// within its PollInterval. store.ErrNotFound when there is no such
// subscription; ErrCallbacksUnsupported on a gateway without callbacks.
func (s *Service) RetryNow(ctx context.Context, k store.DeliveryKey) error {
	if s.dlv == nil {
		return ErrCallbacksUnsupported
	}
	if err := s.dlv.RetryDelivery(ctx, k, time.Now()); err != nil {
		return err
	}
	s.kick()
	return nil
}
