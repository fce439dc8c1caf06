package node

import (
	"fmt"
	"strings"
)

// releaseAtLeast says whether the Talos release tag running (v1.13.9) is minor 1.<minor> or
// later: the simulated nodes answer as the release they run, and what changed between releases
// is gated on it. An unparsable tag counts as the oldest.
func releaseAtLeast(running string, minor int) bool {
	var major, m int
	if _, err := fmt.Sscanf(strings.TrimPrefix(running, "v"), "%d.%d", &major, &m); err != nil {
		return false
	}
	return major > 1 || (major == 1 && m >= minor)
}
