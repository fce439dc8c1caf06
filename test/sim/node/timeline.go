package node

import (
	"slices"
	"strings"
	"time"
)

// TimelineEntry is one thing that happened to a node, for tests that check the order of an
// orchestration (GET /state "timeline").
type TimelineEntry struct {
	At     time.Time `json:"at"`
	Node   string    `json:"node"`
	Event  string    `json:"event"`
	Detail string    `json:"detail"`
	// Component and Version are set on TimelineComponent entries only (omitted from the JSON
	// otherwise, so older readers see what they saw before).
	Component string `json:"component,omitempty"`
	Version   string `json:"version,omitempty"`
}

// Timeline event kinds.
const (
	TimelineUpgrade        = "upgrade"
	TimelineUpgradeRefused = "upgrade-refused"
	TimelineApply          = "apply"
	TimelineDown           = "down"
	TimelineUp             = "up"
	TimelineSnapshot       = "snapshot"
	// etcd's leadership: a member elected or handed the leadership, and a leader lost while it
	// was leader (its machine or its etcd went down, or quorum was lost).
	TimelineEtcdLeader     = "etcd-leader"
	TimelineEtcdLeaderLost = "etcd-leader-lost"
	// TimelineEtcdJoined: a control plane's etcd member answers again after a boot (WithEtcdJoinTime).
	TimelineEtcdJoined = "etcd-joined"
	// etcd membership (members.go): a member added (the founder at the bootstrap, the others as
	// learners), a learner promoted, a member that left by itself (EtcdLeaveCluster, a graceful
	// Reset), one removed by id from another control plane (the entry names the removed one).
	TimelineEtcdMemberAdded     = "etcd-member-added"
	TimelineEtcdLearnerPromoted = "etcd-learner-promoted"
	TimelineEtcdLeave           = "etcd-leave"
	TimelineEtcdMemberRemoved   = "etcd-member-removed"
	// Reset (reset.go): the request as accepted; the cordon and drain of its Node (detail: the
	// pods evicted, or why it stopped); the wipe; the machine then goes "down".
	TimelineReset = "reset"
	TimelineDrain = "drain"
	TimelineWipe  = "wipe"
	// TimelineNodeNotReady: the Node's Ready condition turned Unknown after its kubelet went
	// silent for the node-monitor grace period (nodemonitor.go).
	TimelineNodeNotReady = "node-not-ready"
	// Recovery (recover.go): a bootstrap with recover_etcd (detail: the snapshot's status, or
	// why the recovery failed), a snapshot uploaded with EtcdRecover, and a cluster's etcd lost because
	// every member's data was wiped.
	TimelineBootstrap   = "bootstrap"
	TimelineEtcdRecover = "etcd-recover"
	TimelineEtcdLost    = "etcd-lost"
	// Kubernetes upgrades (upgradek8s.go): an image pulled with MachineService.ImagePull (detail:
	// the image), and a component that starts on that node with another image version than it
	// ran there (a control-plane static pod or the kubelet; Component and Version set, detail
	// "<component> <version>"; a first start is not recorded: its version is the config's), so a
	// test can check the version-skew policy at every step.
	TimelineImagePull = "image-pull"
	TimelineComponent = "component"
)

func (t *Trust) record(node, event, detail string) {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	t.timeline = append(t.timeline, TimelineEntry{At: time.Now(), Node: node, Event: event, Detail: detail})
}

// recordComponent is a TimelineComponent entry: component runs image's version on node from now.
func (t *Trust) recordComponent(node, component, image string) {
	version := strings.TrimPrefix(imageTag(image), "v")
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	t.timeline = append(t.timeline, TimelineEntry{At: time.Now(), Node: node, Event: TimelineComponent,
		Detail: component + " " + version, Component: component, Version: version})
}

// Timeline is everything recorded so far by the simulation's nodes, in time order.
func (t *Trust) Timeline() []TimelineEntry {
	t.timelineMu.Lock()
	defer t.timelineMu.Unlock()
	return slices.Clone(t.timeline)
}
