package node

import (
	"slices"
	"time"
)

// TimelineEntry is one thing that happened to a node, for tests that check the order of an
// orchestration (GET /state "timeline").
type TimelineEntry struct {
	At     time.Time `json:"at"`
	Node   string    `json:"node"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
}

// Timeline event kinds.
const (
	TimelineUpgrade        = "upgrade"
	TimelineUpgradeRefused = "upgrade-refused"
	TimelineApply          = "apply"
	TimelineDown           = "down"
	TimelineUp             = "up"
	TimelineSnapshot       = "snapshot"
)

func (t *Trust) record(node, event, detail string) {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	t.timeline = append(t.timeline, TimelineEntry{At: time.Now(), Node: node, Event: event, Detail: detail})
}

// Timeline is everything recorded so far by the simulation's nodes, in time order.
func (t *Trust) Timeline() []TimelineEntry {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	return slices.Clone(t.timeline)
}
