// The one plan of the loopback addresses and ports the tests (and the scripts that start simulators)
// listen on. Every suite owns whole /24 nets of loopback, 127.<base>.<net>.0/24 (its nodes, VIPs
// and endpoints), and the fixed ports its servers listen on; no two suites share either, so any of
// them can run beside any other (test/addresses.test.ts checks it, and that every loopback address
// and test port written in test code is its file's suite's).
//
// 127.<base>.0.x is everyone's, for servers on ports the kernel picks (`:0`) or an engine test's
// fixed ports below. <base> is TALOS_TEST_ADDRESS_BASE (0 unless set; `.ci/run` sets a free one):
// a second checkout on the same machine moves its TypeScript suites (engine tests, bench) to
// 127.<base>.x.x, where nothing of the first listens. The Go suites, `npm run lab` and `npm run
// demo` stay on 127.0.x.x.

/** A suite: the files it is made of (a folder ends in `/`), its nets and its fixed ports. */
export interface Suite {
  files: readonly string[];
  nets: readonly number[];
  ports: readonly number[];
  /** True for suites whose addresses move with TALOS_TEST_ADDRESS_BASE. */
  moves: boolean;
}

const range = (first: number, count: number): number[] => Array.from({ length: count }, (_, i) => first + i);

export const SUITES = {
  // Engine tests (test/engine): each its own simulator, factory and control ports, <net>.1x/.2x nodes.
  e2e: { files: ["test/engine/e2e.test.ts"], nets: [1], ports: [18180, 18181], moves: true },
  faults: { files: ["test/engine/faults.test.ts"], nets: [2], ports: [18280, 18281], moves: true },
  drift: { files: ["test/engine/drift.test.ts"], nets: [3], ports: [18380, 18381], moves: true },
  nodestate: { files: ["test/engine/nodestate.test.ts"], nets: [4], ports: [18480, 18481], moves: true },
  rollout: { files: ["test/engine/rollout.test.ts"], nets: [5], ports: [18580, 18581], moves: true },
  validator: { files: ["test/engine/validator.test.ts"], nets: [6], ports: [18680, 18681], moves: true },
  minors: { files: ["test/engine/minors.test.ts"], nets: [53], ports: [18530, 18531], moves: true },
  members: { files: ["test/engine/members.test.ts"], nets: [55], ports: [18550, 18551], moves: true },
  recover: { files: ["test/engine/recover.test.ts"], nets: [57], ports: [18570, 18571], moves: true },
  kubernetes: { files: ["test/engine/kubernetes.test.ts"], nets: [59], ports: [18590, 18591], moves: true },
  // Simulator, charts; the late (30 s) and never-ready API servers' simulators.
  addons: {
    files: ["test/engine/addons.test.ts"],
    nets: [8, 19, 28],
    ports: [18880, 18881, 18882, 18883, 18884, 18885, 18886],
    moves: true,
  },
  previewSecrets: { files: ["test/engine/preview-secrets.test.ts"], nets: [41], ports: [18780, 18781, 18782], moves: true },
  refresh: { files: ["test/engine/refresh.test.ts"], nets: [46], ports: [18860, 18861], moves: true },
  previewDiff: { files: ["test/engine/preview-diff.test.ts"], nets: [61], ports: [18960, 18961], moves: true },
  migrateApply: { files: ["test/engine/migrate-apply.test.ts"], nets: [52], ports: [18520, 18521], moves: true },
  // npm run bench: a net and two ports for each simulator it starts, never reused within a run.
  bench: { files: ["scripts/bench.ts"], nets: range(100, 100), ports: range(19000, 200), moves: true },
  benchRollout: { files: ["scripts/bench-rollout.ts"], nets: [30], ports: [18990, 18991], moves: true },
  // npm run lab (and the test that runs it as the README says): the README names these addresses.
  lab: { files: ["scripts/lab.ts", "test/engine/lab.test.ts"], nets: [66], ports: [8080, 8081, 8082], moves: false },
  // npm run demo: the README names these addresses; its servers take free ports.
  demo: { files: ["scripts/demo.ts"], nets: [77], ports: [], moves: false },

  // Go tests: `go test ./...` runs a module's packages side by side, so each package has its own.
  // The simulator's nodes (its factory host 127.0.0.1:18082 is a name in images, never bound).
  simNode: { files: ["test/sim/node/"], nets: [7, 11, 12, 13, 14, 21, 22, 23, 24, 26, 29, 99], ports: [18082], moves: false },
  // talos-sim and its tests; the ports are its factory's and control endpoint's defaults (a
  // simulator run by hand, test/sim/README.md).
  simCommand: { files: ["test/sim/cmd/"], nets: [36], ports: [18080, 18081], moves: false },
  simApiserver: { files: ["test/sim/apiserver/"], nets: [18, 38, 39], ports: [], moves: false },
  simTalosctl: { files: ["test/sim/talosctl/"], nets: [15, 16, 25, 27], ports: [], moves: false },
  // The provider's node reads; the lab's cluster endpoint (127.0.9.1:6443) is a name in configs.
  talosnodeNode: { files: ["talosnode/node/", "test/sim/simtest/"], nets: [9], ports: [], moves: false },
  talosnodeProvider: { files: ["talosnode/provider/"], nets: [10, 47, 50], ports: [], moves: false },
  talosnodeRollout: { files: ["talosnode/rollout/"], nets: [17, 32, 33, 34, 42, 43, 44, 45, 48, 49], ports: [], moves: false },
  // The scheduled snapshot's control planes (talosnode/backup: npm run snapshot's command).
  talosnodeBackup: { files: ["talosnode/backup/"], nets: [58], ports: [], moves: false },
} as const satisfies Record<string, Suite>;

export type SuiteName = keyof typeof SUITES;

/** The second octet of the suites that move: TALOS_TEST_ADDRESS_BASE, 0 unless set. */
export function addressBase(value: string | undefined): number {
  if (value === undefined || value === "") return 0;
  if (!/^\d+$/.test(value) || Number(value) > 255) {
    throw new Error(
      `TALOS_TEST_ADDRESS_BASE=${JSON.stringify(value)}: must be a whole number from 0 to 255 (the second octet of 127.x.y.z)`,
    );
  }
  return Number(value);
}

const BASE = addressBase(process.env.TALOS_TEST_ADDRESS_BASE);

/** "127.<base>.<net>": the first three octets of a net of a suite that moves. */
export const netPrefix = (net: number): string => `127.${BASE}.${net}`;

/** The address the moving suites' servers (factory, control, charts) listen on: 127.<base>.0.1. */
export const SERVER_HOST = `${netPrefix(0)}.1`;
