package embedded

import (
	"testing"

	"github.com/feedgate/feedgate/store/storetest"
)

func TestDeliveryConformance(t *testing.T) {
	storetest.RunDelivery(t, openTemp)
}

func TestNodesConformance(t *testing.T) {
	storetest.RunNodes(t, openTemp)
}
