package judge

import (
	"fmt"
	"sort"

	coreconfig "github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
)

// generatedStep is the position of the generated config, before the first patch.
const generatedStep = -1

// blamed is a finding with the position of the patch it is blamed on, for ordering.
type blamed struct {
	finding
	step int
}

// judgeNode applies one node's patches in order on its role's generated config and validates
// after each one. A patch Talos cannot load or apply is a problem of that patch and is left out
// of the rest of the chain, so every later patch is still judged. Only what is still wrong after
// the last patch counts (what the node would be sent); each such error is blamed on the patch
// after which it appeared and stayed, or on the generated config if it was there from the start.
// cfg is the config after every patch that applied.
func judgeNode(base *roleBase, patches []Patch) (cfg coreconfig.Provider, problems, warnings []finding) {
	var refused []blamed
	cfg = base.cfg
	errs, warns := newStreaks(base.verdict.errors), newStreaks(base.verdict.warnings)

	for step, p := range patches {
		next, err := applyOne(cfg, p.Patch)
		if err != nil {
			refused = append(refused, blamed{finding{Key: p.Key, Message: err.Error()}, step})
			continue
		}
		cfg = next
		v := judgeConfig(cfg, base.kubernetes)
		errs.update(v.errors, step)
		warns.update(v.warnings, step)
	}

	key := func(step int) string {
		if step == generatedStep {
			return GeneratedKey
		}
		return patches[step].Key
	}
	return cfg, ordered(append(refused, errs.blame(key)...)), ordered(warns.blame(key))
}

// applyOne loads one patch and applies it with Talos' config patcher, as the talos plugin does
// (configpatcher.LoadPatches, then configpatcher.Apply).
func applyOne(cfg coreconfig.Provider, text string) (out coreconfig.Provider, err error) {
	// A crash of the config library on odd input is this patch's problem, not the run's.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("Talos' config library failed on this patch (Talos: %s)", oneLine(fmt.Sprint(r)))
		}
	}()
	patch, err := configpatcher.LoadPatch([]byte(text))
	if err != nil {
		return nil, describeLoad(err, text)
	}
	patched, err := configpatcher.Apply(configpatcher.WithConfig(cfg), []configpatcher.Patch{patch})
	if err != nil {
		return nil, describeApply(err)
	}
	// A JSON patch works on the config's text, which Talos loads again afterwards.
	out, err = patched.Config()
	if err != nil {
		return nil, talos("the patched config does not load", decodingTo.ReplaceAllString(oneLine(err.Error()), ""))
	}
	return out, nil
}

// streaks records, for each message present now, the step after which it appeared and stayed.
type streaks struct {
	order []string
	since map[string]int
}

func newStreaks(initial []string) *streaks {
	s := &streaks{since: map[string]int{}}
	s.update(initial, generatedStep)
	return s
}

func (s *streaks) update(current []string, step int) {
	since := make(map[string]int, len(current))
	for _, m := range current {
		if at, ok := s.since[m]; ok {
			since[m] = at
		} else {
			since[m] = step
		}
	}
	s.order, s.since = current, since
}

func (s *streaks) blame(key func(step int) string) []blamed {
	out := make([]blamed, 0, len(s.order))
	for _, m := range s.order {
		step := s.since[m]
		out = append(out, blamed{finding{Key: key(step), Message: m}, step})
	}
	return out
}

// ordered sorts findings by the patch they are blamed on, keeping Talos' order within one.
func ordered(list []blamed) []finding {
	sort.SliceStable(list, func(i, j int) bool { return list[i].step < list[j].step })
	out := make([]finding, len(list))
	for i, b := range list {
		out[i] = b.finding
	}
	return out
}
