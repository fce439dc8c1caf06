// The GitHub workflows as a security reviewer reads them: what a pull request can make the site's
// runner do, what CI takes from outside (actions, Go, Node), and where secrets go. Pure YAML
// reading; actionlint (in .ci/run) checks the syntax and expressions.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { isPair, isScalar, parseDocument, visit } from "yaml";

const root = join(__dirname, "..");
const workflowsDir = join(root, ".github", "workflows");
const workflowFiles = readdirSync(workflowsDir)
  .filter((name) => /\.ya?ml$/.test(name))
  .sort();
// The repository's own composite actions (`uses: ./.github/actions/<name>`).
const actionsDir = join(root, ".github", "actions");
const actionNames = readdirSync(actionsDir).sort();
const SETUP_ACTION = "./.github/actions/setup";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonMap = { [key: string]: Json };

const isJsonMap = (value: Json | undefined): value is JsonMap => typeof value === "object" && value !== null && !Array.isArray(value);
const asMap = (value: Json | undefined): JsonMap => (isJsonMap(value) ? value : {});
const asList = (value: Json | undefined): Json[] => (Array.isArray(value) ? value : []);

// Events whose runs a fork's pull request can start or feed.
const FORK_REACHABLE_EVENTS = [
  "pull_request",
  "pull_request_target",
  "pull_request_review",
  "pull_request_review_comment",
  "issue_comment",
  "workflow_run",
];

// The one `if:` that keeps a job away from forks: the pull request's head is a branch of this repository.
const SAME_REPOSITORY_GUARD = "github.event.pull_request.head.repo.full_name == github.repository";

// `owner/repo[/path]@<40 hex>`: a commit cannot move; a tag or branch can.
const PINNED_ACTION = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(\/[^@\s]+)?@[0-9a-f]{40}$/;
const PINNED_IMAGE = /^docker:\/\/[^@\s]+@sha256:[0-9a-f]{64}$/;
const VERSION_COMMENT = /^v?\d+(\.\d+)*\S*$/;

function triggers(on: Json | undefined): string[] {
  if (typeof on === "string") return [on];
  if (Array.isArray(on)) return on.filter((event): event is string => typeof event === "string");
  return Object.keys(asMap(on));
}

// GitHub-hosted only when every label names a hosted image; anything else (a custom label, a
// runner group, an expression) may pick a self-hosted runner, so it counts as one.
function mayRunSelfHosted(runsOn: Json | undefined): boolean {
  const labels = typeof runsOn === "string" ? [runsOn] : Array.isArray(runsOn) ? runsOn : null;
  if (labels === null || labels.length === 0) return true;
  return !labels.every((label) => typeof label === "string" && /^(ubuntu|windows|macos)-[A-Za-z0-9.-]+$/.test(label));
}

// Splits an expression at a top-level operator (outside parentheses and string literals).
function splitTopLevel(expression: string, operator: "&&" | "||"): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'") quoted = !quoted;
    else if (!quoted && c === "(") depth++;
    else if (!quoted && c === ")") depth--;
    else if (!quoted && depth === 0 && expression.startsWith(operator, i)) {
      parts.push(expression.slice(start, i));
      start = i + operator.length;
      i++;
    }
  }
  parts.push(expression.slice(start));
  return parts.map((part) => part.trim());
}

// Drops parentheses that enclose the whole term: "(a == b)" is "a == b", "(a) && (b)" stays.
const stripParens = (term: string): string => {
  const t = term.trim();
  if (!t.startsWith("(") || !t.endsWith(")")) return t;
  let depth = 0;
  for (let i = 0; i < t.length - 1; i++) {
    if (t[i] === "(") depth++;
    else if (t[i] === ")") depth--;
    if (depth === 0) return t;
  }
  return stripParens(t.slice(1, -1));
};

// True when the job runs only if the same-repository guard holds: the guard is one of the
// conjuncts of the whole condition, with no top-level `||` that could bypass it.
function guardsAgainstForks(condition: Json | undefined): boolean {
  if (typeof condition !== "string") return false;
  const expression = condition
    .trim()
    .replace(/^\$\{\{([\s\S]*)\}\}$/, "$1")
    .trim();
  if (splitTopLevel(expression, "||").length !== 1) return false;
  const wanted = new Set([
    SAME_REPOSITORY_GUARD.replace(/\s+/g, ""),
    SAME_REPOSITORY_GUARD.split("==")
      .reverse()
      .map((side) => side.trim())
      .join("==")
      .replace(/\s+/g, ""),
  ]);
  return splitTopLevel(expression, "&&").some((term) => wanted.has(stripParens(term).replace(/\s+/g, "")));
}

type Uses = { where: string; value: string; comment: string | undefined };

// Every `uses:` with its trailing comment: in a workflow (steps and reusable-workflow jobs), named
// by its job; in a composite action (`action`: the action's label), under `runs.steps`.
function usesOf(text: string, action?: string): Uses[] {
  const found: Uses[] = [];
  const doc = parseDocument(text);
  visit(doc, {
    Pair(_, pair, path) {
      if (!isPair(pair) || !isScalar(pair.key) || pair.key.value !== "uses" || !isScalar(pair.value)) return;
      const at = (key: string) => path.findIndex((node) => isPair(node) && isScalar(node.key) && node.key.value === key);
      let where: string;
      if (action !== undefined) {
        if (at("runs") < 0) return;
        where = action;
      } else {
        const jobsAt = at("jobs");
        if (jobsAt < 0) return;
        const job = path[jobsAt + 2];
        where = `job ${isPair(job) && isScalar(job.key) ? String(job.key.value) : "?"}`;
      }
      found.push({ where, value: String(pair.value.value), comment: pair.value.comment?.trim() });
    },
  });
  return found;
}

// An action by tag or branch can change under the workflow; a pin needs the version it stands for.
function pinFindings(uses: Uses[]): string[] {
  const findings: string[] = [];
  for (const use of uses) {
    if (use.value.startsWith("./")) continue;
    if (!(PINNED_ACTION.test(use.value) || PINNED_IMAGE.test(use.value))) {
      findings.push(`${use.where}: \`uses: ${use.value}\` is not pinned to a full commit SHA (owner/repo@<40 hex> # vX.Y.Z)`);
    } else if (!use.value.startsWith("docker://") && (use.comment === undefined || !VERSION_COMMENT.test(use.comment))) {
      findings.push(`${use.where}: \`uses: ${use.value}\` needs the version it stands for in a trailing comment (# vX.Y.Z)`);
    }
  }
  return findings;
}

// Everything this file refuses in one workflow, one line per finding, naming the job and the fix.
function workflowFindings(text: string): string[] {
  const findings: string[] = [];
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return doc.errors.map((e) => `not YAML: ${e.message}`);
  const workflow = asMap(doc.toJS() as Json);
  // YAML 1.2 (the `yaml` package's default) keeps a bare `on` key as the string "on".
  const events = triggers(workflow.on);
  const forkReachable = events.filter((event) => FORK_REACHABLE_EVENTS.includes(event));

  const topPermissions = workflow.permissions;
  if (!isJsonMap(topPermissions) || Object.keys(topPermissions).length > 0) {
    findings.push("workflow: top-level `permissions:` must be `{}` (each job grants what it needs)");
  }

  findings.push(...pinFindings(usesOf(text)));

  for (const [name, jobValue] of Object.entries(asMap(workflow.jobs))) {
    const job = asMap(jobValue);
    const permissions = job.permissions;
    if (!isJsonMap(permissions)) {
      findings.push(`job ${name}: no \`permissions:\` map (grant the least it needs, e.g. \`contents: read\`)`);
    }

    if (forkReachable.length > 0 && mayRunSelfHosted(job["runs-on"]) && !guardsAgainstForks(job.if)) {
      findings.push(
        `job ${name}: runs on a self-hosted runner on ${forkReachable.join(", ")} without \`if: ${SAME_REPOSITORY_GUARD}\`, so a fork's pull request can run code on it`,
      );
    }

    const jobEnv = JSON.stringify(job.env ?? {});
    if (/secrets\./.test(jobEnv)) {
      findings.push(`job ${name}: secrets in the job's \`env:\`; give them only to the step that needs them`);
    }
    const secretNames = [...JSON.stringify(job).matchAll(/secrets\.([A-Za-z0-9_]+)/g)].map((m) => m[1]);
    if (secretNames.some((secret) => secret !== "GITHUB_TOKEN") && job.environment === undefined) {
      findings.push(`job ${name}: reads repository secrets without an \`environment:\`; scope the stack's secrets to an environment`);
    }

    findings.push(...stepFindings(`job ${name}`, job.steps));
  }
  return findings;
}

// The rules every step is held to, in a workflow's job or in one of the repository's actions.
function stepFindings(where: string, steps: Json | undefined): string[] {
  const findings: string[] = [];
  asList(steps).forEach((stepValue, index) => {
    const step = asMap(stepValue);
    const label = `${where}, step ${typeof step.name === "string" ? `"${step.name}"` : index + 1}`;
    const uses = typeof step.uses === "string" ? step.uses : "";
    const withs = asMap(step.with);
    if (uses.startsWith("actions/checkout@") && withs["persist-credentials"] !== false && withs["persist-credentials"] !== "false") {
      findings.push(`${label}: actions/checkout without \`persist-credentials: false\` leaves the token in .git/config`);
    }
    if (uses.startsWith("actions/setup-go@") && (withs["go-version"] !== undefined || withs["go-version-file"] === undefined)) {
      findings.push(`${label}: setup-go takes Go from a module (\`go-version-file:\`), not \`go-version:\``);
    }
    if (uses.startsWith("actions/setup-node@") && (withs["node-version"] !== undefined || withs["node-version-file"] !== ".nvmrc")) {
      findings.push(`${label}: setup-node takes Node from \`node-version-file: .nvmrc\`, not \`node-version:\``);
    }
    if (typeof step.run === "string" && step.run.includes("${{")) {
      findings.push(`${label}: \`\${{ }}\` inside \`run:\` is pasted into the script; pass it through \`env:\``);
    }
  });
  return findings;
}

// Everything this file refuses in one of the repository's composite actions: every action it uses
// pinned as in a workflow, and the step rules.
function actionFindings(name: string, text: string): string[] {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return doc.errors.map((e) => `not YAML: ${e.message}`);
  const runs = asMap(asMap(doc.toJS() as Json).runs);
  const findings: string[] = [];
  if (runs.using !== "composite") findings.push(`action ${name}: \`runs.using\` must be \`composite\``);
  findings.push(...pinFindings(usesOf(text, `action ${name}`)));
  findings.push(...stepFindings(`action ${name}`, runs.steps));
  return findings;
}

// `${{ inner }}`, written so that no string of this file looks like a template placeholder.
const expression = (inner: string) => `$${"{{"} ${inner} }}`;
const read = (name: string) => readFileSync(join(workflowsDir, name), "utf8");
const workflow = (name: string) => asMap(parseDocument(read(name)).toJS() as Json);
const readAction = (name: string) => readFileSync(join(actionsDir, name, "action.yml"), "utf8");
const action = (name: string) => asMap(parseDocument(readAction(name)).toJS() as Json);

// A job's steps as the runner runs them: each of the repository's own actions replaced by its steps.
function stepsRun(job: JsonMap): JsonMap[] {
  return asList(job.steps)
    .map(asMap)
    .flatMap((step) => {
      const uses = typeof step.uses === "string" ? step.uses : "";
      if (!uses.startsWith("./.github/actions/")) return [step];
      return stepsRun(asMap(action(uses.slice("./.github/actions/".length)).runs));
    });
}

// The environment each matrix entry of a job runs in (`environment: ${{ matrix.environment }}` with
// `strategy.matrix.include`), keyed by the entry's stack.
function environmentsByStack(job: JsonMap): Record<string, string> {
  const environment = typeof job.environment === "string" ? job.environment : JSON.stringify(job.environment);
  const byStack: Record<string, string> = {};
  for (const entryValue of asList(asMap(asMap(job.strategy).matrix).include)) {
    const entry = asMap(entryValue);
    const resolved = environment.replace(/\$\{\{\s*matrix\.([A-Za-z0-9_-]+)\s*\}\}/g, (_, key: string) => String(entry[key]));
    byStack[String(entry.stack)] = resolved;
  }
  return byStack;
}

function goModules(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (["node_modules", "sdks", ".git", ".pulumi-state"].includes(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...goModules(path));
    else if (entry.name === "go.mod") found.push(relative(root, path));
  }
  return found;
}

const goDirective = (file: string): number[] => {
  const match = /^go (\d+(?:\.\d+)*)\s*$/m.exec(readFileSync(join(root, file), "utf8"));
  if (!match?.[1]) throw new Error(`${file}: no go directive`);
  return match[1].split(".").map(Number);
};
const compareVersions = (a: number[], b: number[]): number => {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
};

describe("the workflow rules", () => {
  it("refuse an action by tag or branch, and a pin without its version", () => {
    const findings = workflowFindings(`on: push
permissions: {}
jobs:
  a:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - uses: actions/cache@v4
      - uses: actions/cache@main
      - uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830
      - uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0
      - uses: ./.github/actions/local
  b:
    permissions: {}
    uses: someone/workflows/.github/workflows/x.yml@v1
`);
    expect(findings).toEqual([
      "job a: `uses: actions/cache@v4` is not pinned to a full commit SHA (owner/repo@<40 hex> # vX.Y.Z)",
      "job a: `uses: actions/cache@main` is not pinned to a full commit SHA (owner/repo@<40 hex> # vX.Y.Z)",
      "job a: `uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830` needs the version it stands for in a trailing comment (# vX.Y.Z)",
      "job b: `uses: someone/workflows/.github/workflows/x.yml@v1` is not pinned to a full commit SHA (owner/repo@<40 hex> # vX.Y.Z)",
    ]);
  });

  it("refuse a self-hosted job a fork's pull request can reach, whatever the runner is called", () => {
    const job = (runsOn: string, condition = "") => `on:
  pull_request_target: {}
permissions: {}
jobs:
  j:
    runs-on: ${runsOn}
    permissions: {}
${condition ? `    if: ${condition}\n` : ""}    steps: []
`;
    const refused = (runsOn: string, condition = "") => workflowFindings(job(runsOn, condition)).length > 0;
    expect(refused("[self-hosted, talos-site]")).toBe(true);
    expect(refused("talos-site")).toBe(true);
    expect(refused(`\${{ matrix.runner }}`)).toBe(true);
    expect(refused("{ group: site }")).toBe(true);
    expect(refused("ubuntu-latest")).toBe(false);
    expect(refused("[self-hosted]", SAME_REPOSITORY_GUARD)).toBe(false);
    expect(refused("[self-hosted]", `\${{ github.repository == github.event.pull_request.head.repo.full_name && !cancelled() }}`)).toBe(
      false,
    );
    expect(refused("[self-hosted]", `\${{ ${SAME_REPOSITORY_GUARD} || github.actor == 'x' }}`)).toBe(true);
    expect(refused("[self-hosted]", `${SAME_REPOSITORY_GUARD} && true || true`)).toBe(true);
    expect(refused("[self-hosted]", "github.event.pull_request.head.repo.full_name != github.repository")).toBe(true);
    expect(workflowFindings(job("[self-hosted]"))).toEqual([
      `job j: runs on a self-hosted runner on pull_request_target without \`if: ${SAME_REPOSITORY_GUARD}\`, so a fork's pull request can run code on it`,
    ]);
  });

  it("refuse checkouts that keep the token, jobs without permissions, secrets outside an environment or in the job's env, expressions in scripts", () => {
    const findings = workflowFindings(`on: push
permissions:
  contents: write
jobs:
  a:
    runs-on: ubuntu-latest
    env:
      TOKEN: \${{ secrets.TOKEN }}
    steps:
      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0
      - uses: actions/setup-go@40f1582b2485089dde7abd97c1529aa768e1baff # v5.6.0
        with:
          go-version: stable
      - uses: actions/setup-node@49933ea5288caeca8642d1e84afbd3f7d6820020 # v4.4.0
        with:
          node-version: 20
      - run: echo "\${{ github.event.pull_request.title }}"
`);
    expect(findings).toEqual([
      "workflow: top-level `permissions:` must be `{}` (each job grants what it needs)",
      "job a: no `permissions:` map (grant the least it needs, e.g. `contents: read`)",
      "job a: secrets in the job's `env:`; give them only to the step that needs them",
      "job a: reads repository secrets without an `environment:`; scope the stack's secrets to an environment",
      "job a, step 1: actions/checkout without `persist-credentials: false` leaves the token in .git/config",
      "job a, step 2: setup-go takes Go from a module (`go-version-file:`), not `go-version:`",
      "job a, step 3: setup-node takes Node from `node-version-file: .nvmrc`, not `node-version:`",
      "job a, step 4: `$" + "{{ }}` inside `run:` is pasted into the script; pass it through `env:`",
    ]);
  });
});

describe("the composite action rules", () => {
  it("refuse an action by tag, Node by version, an expression in a script, and anything but a composite action", () => {
    expect(
      actionFindings(
        "bad",
        `name: bad
description: x
runs:
  using: node20
  steps:
    - uses: actions/setup-node@v4
      with:
        node-version: 20
    - uses: actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0
    - run: echo "\${{ inputs.x }}"
      shell: bash
`,
      ),
    ).toEqual([
      "action bad: `runs.using` must be `composite`",
      "action bad: `uses: actions/setup-node@v4` is not pinned to a full commit SHA (owner/repo@<40 hex> # vX.Y.Z)",
      "action bad, step 1: setup-node takes Node from `node-version-file: .nvmrc`, not `node-version:`",
      "action bad, step 3: `$" + "{{ }}` inside `run:` is pasted into the script; pass it through `env:`",
    ]);
  });
});

describe("the workflows", () => {
  it("exist", () => {
    expect(workflowFiles).toEqual(["deploy.yml", "drift.yml", "pull-request.yml", "snapshot.yml"]);
  });

  for (const name of workflowFiles) {
    it(`${name} pins every action, keeps forks off the site runner, and grants each job the least`, () => {
      expect(workflowFindings(read(name))).toEqual([]);
    });
  }

  it("share one setup: every job checks out, then runs the setup action, and none sets up Node, Go or the toolchain itself", () => {
    expect(actionNames).toEqual(["setup"]);
    expect(actionFindings("setup", readAction("setup"))).toEqual([]);
    const ownSetup = (step: JsonMap) =>
      (typeof step.uses === "string" && /^actions\/(setup-node|setup-go|cache)@/.test(step.uses)) ||
      (typeof step.run === "string" && /npm (ci|install|run setup)\b/.test(step.run));
    const jobs: string[] = [];
    for (const name of workflowFiles) {
      for (const [jobName, jobValue] of Object.entries(asMap(workflow(name).jobs))) {
        const steps = asList(asMap(jobValue).steps).map(asMap);
        jobs.push(`${name} ${jobName}`);
        expect(String(steps[0]?.uses), `${name} ${jobName}: step 1`).toMatch(/^actions\/checkout@/);
        expect(steps[1]?.uses, `${name} ${jobName}: step 2`).toBe(SETUP_ACTION);
        expect(steps.filter(ownSetup), `${name} ${jobName}: its own setup steps`).toEqual([]);
      }
    }
    expect(jobs.sort()).toEqual([
      "deploy.yml up",
      "drift.yml drift",
      "pull-request.yml checks",
      "pull-request.yml preview",
      "snapshot.yml snapshot",
    ]);
  });

  it("a pull request's checks are CI's: `.ci/run`, which runs the setup, the Go checks and npm test itself", () => {
    const checks = asMap(asMap(workflow("pull-request.yml").jobs).checks);
    const steps = asList(checks.steps).map(asMap);
    expect(steps.slice(1)).toEqual([{ uses: SETUP_ACTION, with: { "run-setup": "false" } }, { run: "bash .ci/run" }]);
    const ci = readFileSync(join(root, ".ci", "run"), "utf8");
    for (const command of [
      "npm run setup",
      "npx tsc --noEmit",
      "npx biome ci",
      "npm run validate -- dev prod",
      "gofmt -l",
      "go vet",
      "go test",
      "npm test",
    ]) {
      expect(ci, command).toContain(command);
    }
    // Where setup runs, the action runs it; where it does not, `.ci/run` does.
    const setupStep = stepsRun({ steps: [{ uses: SETUP_ACTION }] }).find((step) => step.run === "npm run setup");
    expect(setupStep?.if).toBe("inputs.run-setup == 'true'");
    expect(asMap(asMap(asMap(action("setup").inputs)["run-setup"])).default).toBe("true");
  });

  it("a fork's pull request gets the checks only, on a GitHub-hosted runner, without secrets", () => {
    const jobs = asMap(workflow("pull-request.yml").jobs);
    const checks = asMap(jobs.checks);
    expect(checks["runs-on"]).toBe("ubuntu-latest");
    expect(checks.if).toBeUndefined();
    expect(JSON.stringify(checks)).not.toMatch(/secrets\./);
    expect(checks.environment).toBeUndefined();
    expect(checks.permissions).toEqual({ contents: "read" });
    const preview = asMap(jobs.preview);
    expect(preview.if).toBe(SAME_REPOSITORY_GUARD);
    expect(preview.needs).toBe("checks");
  });

  it("prod's preview waits for a reviewer (its own environment); dev's runs at once", () => {
    const preview = asMap(asMap(workflow("pull-request.yml").jobs).preview);
    expect(environmentsByStack(preview)).toEqual({ dev: "development", prod: "production-preview" });
    const deploy = asMap(asMap(workflow("deploy.yml").jobs).up);
    expect(environmentsByStack(deploy)).toEqual({ dev: "development", prod: "production" });
    // Scheduled drift runs unattended: prod's secrets come from an environment open to main only.
    const drift = asMap(asMap(workflow("drift.yml").jobs).drift);
    expect(environmentsByStack(drift)).toEqual({ dev: "development", prod: "production-drift" });
    // So do scheduled snapshots.
    const snapshot = asMap(asMap(workflow("snapshot.yml").jobs).snapshot);
    expect(environmentsByStack(snapshot)).toEqual({ dev: "development", prod: "production-drift" });
  });

  it("the preview's refresh reads the nodes with the environment's os:reader talosconfig, never the admin one; deploy and drift compare in full", () => {
    const preview = asMap(asMap(workflow("pull-request.yml").jobs).preview);
    const steps = asList(preview.steps).map(asMap);
    const writes = steps.findIndex((step) => asMap(step.env).TALOS_READER_TALOSCONFIG !== undefined);
    const pulumi = steps.findIndex((step) => typeof step.uses === "string" && step.uses.startsWith("pulumi/actions@"));
    const removes = steps.findIndex((step) => typeof step.run === "string" && step.run.includes('rm -f "$RUNNER_TEMP/reader.talosconfig"'));
    expect(writes).toBeGreaterThanOrEqual(0);
    expect(pulumi).toBeGreaterThan(writes);
    expect(removes).toBeGreaterThan(pulumi);
    // The talosconfig's content only in the step that writes it, to a file only its user reads.
    expect(asMap(steps[writes]).env).toEqual({ TALOS_READER_TALOSCONFIG: expression("secrets.TALOS_READER_TALOSCONFIG") });
    expect(String(asMap(steps[writes]).run)).toMatch(/umask 077\n.*> "\$RUNNER_TEMP\/reader\.talosconfig"/);
    expect(asMap(steps[removes]).if).toBe("always()");
    // The Pulumi step gets the file's path, not the secret, and no other talosconfig.
    const pulumiEnv = asMap(asMap(steps[pulumi]).env);
    expect(pulumiEnv.TALOSNODE_READ_TALOSCONFIG).toBe(`${expression("runner.temp")}/reader.talosconfig`);
    expect(Object.keys(pulumiEnv).sort()).toEqual([
      "PULUMI_ACCESS_TOKEN",
      "PULUMI_BACKEND_URL",
      "PULUMI_CONFIG_PASSPHRASE",
      "TALOSNODE_READ_TALOSCONFIG",
    ]);
    // The job's secrets: the stack's backend and passphrase, the reader talosconfig, the PR token.
    const secretNames = new Set([...JSON.stringify(preview).matchAll(/secrets\.([A-Za-z0-9_]+)/g)].map((m) => m[1]));
    expect([...secretNames].sort()).toEqual([
      "GITHUB_TOKEN",
      "PULUMI_ACCESS_TOKEN",
      "PULUMI_CONFIG_PASSPHRASE",
      "TALOS_READER_TALOSCONFIG",
    ]);
    // A deploy's refresh must put a changed config back, and drift must see it: both read as admin.
    for (const name of ["deploy.yml", "drift.yml", "snapshot.yml"]) {
      expect(read(name)).not.toMatch(/TALOSNODE_READ_TALOSCONFIG|TALOS_READER_TALOSCONFIG/);
    }
  });

  it("write only where a job writes: PR comments from the preview, issues from drift", () => {
    const permissions = (file: string, job: string) => asMap(asMap(workflow(file).jobs)[job]).permissions;
    expect(permissions("pull-request.yml", "preview")).toEqual({ contents: "read", "pull-requests": "write" });
    expect(permissions("drift.yml", "drift")).toEqual({ contents: "read", issues: "write" });
    expect(permissions("deploy.yml", "up")).toEqual({ contents: "read" });
    expect(permissions("snapshot.yml", "snapshot")).toEqual({ contents: "read" });
  });

  it("take Go from the module that needs the newest Go, and Node from .nvmrc", () => {
    const modules = goModules(root);
    expect(modules.length).toBeGreaterThan(3);
    const newest = modules.reduce((a, b) => (compareVersions(goDirective(b), goDirective(a)) > 0 ? b : a));
    const goFiles = new Set<string>();
    const nodeFiles = new Set<string>();
    for (const name of workflowFiles) {
      for (const jobValue of Object.values(asMap(workflow(name).jobs))) {
        for (const step of stepsRun(asMap(jobValue))) {
          if (typeof step.uses !== "string") continue;
          if (step.uses.startsWith("actions/setup-go@")) goFiles.add(String(asMap(step.with)["go-version-file"]));
          if (step.uses.startsWith("actions/setup-node@")) nodeFiles.add(String(asMap(step.with)["node-version-file"]));
        }
      }
    }
    expect([...goFiles]).toEqual([newest]);
    expect([...nodeFiles]).toEqual([".nvmrc"]);
    // One exact Node version, of the major the project is typed for.
    const nvmrc = readFileSync(join(root, ".nvmrc"), "utf8").trim();
    expect(nvmrc).toMatch(/^\d+\.\d+\.\d+$/);
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
    const typesMajor = /(\d+)/.exec(pkg.devDependencies["@types/node"] ?? "")?.[1];
    expect(nvmrc.split(".")[0]).toBe(typesMajor);
  });

  it("set Node up from .nvmrc before any step that runs Node.js (npm, npx, node, the Pulumi action)", () => {
    const runsNode = (step: JsonMap) =>
      (typeof step.run === "string" && /(^|[\s;&|(])(npm|npx|node)\s/.test(step.run)) ||
      (typeof step.uses === "string" && step.uses.startsWith("pulumi/actions@"));
    const jobsRunningNode: string[] = [];
    for (const name of workflowFiles) {
      for (const [jobName, jobValue] of Object.entries(asMap(workflow(name).jobs))) {
        const steps = stepsRun(asMap(jobValue));
        const first = steps.findIndex(runsNode);
        if (first < 0) continue;
        jobsRunningNode.push(`${name} ${jobName}`);
        const setup = steps.findIndex((step) => typeof step.uses === "string" && step.uses.startsWith("actions/setup-node@"));
        expect(setup, `${name} ${jobName}: setup-node before step ${first + 1}`).toBeGreaterThanOrEqual(0);
        expect(setup).toBeLessThan(first);
        expect(asMap(steps[setup]).with).toMatchObject({ "node-version-file": ".nvmrc" });
      }
    }
    expect(jobsRunningNode.sort()).toEqual([
      "deploy.yml up",
      "drift.yml drift",
      "pull-request.yml checks",
      "pull-request.yml preview",
      "snapshot.yml snapshot",
    ]);
  });

  it("snapshots on a schedule (or on demand) with `npm run snapshot`, on the site runner, the stack's backend and passphrase to that step alone", () => {
    const file = workflow("snapshot.yml");
    expect(triggers(file.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect(asList(asMap(file.on).schedule)).toHaveLength(1);
    const job = asMap(asMap(file.jobs).snapshot);
    // The nodes' Talos API and a folder that outlives the job: where deploy and drift run.
    expect(job["runs-on"]).toEqual(asMap(asMap(workflow("deploy.yml").jobs).up)["runs-on"]);
    expect(job["runs-on"]).toEqual(["self-hosted", "talos-site"]);
    // Not the deploy's group: a queued snapshot would cancel a deploy waiting in it.
    expect(asMap(job.concurrency)).toEqual({ group: `snapshot-${expression("matrix.stack")}`, "cancel-in-progress": false });
    const steps = asList(job.steps).map(asMap);
    expect(steps.slice(2)).toEqual([
      {
        run: 'npm run --silent snapshot -- "$STACK"',
        env: {
          STACK: expression("matrix.stack"),
          PULUMI_ACCESS_TOKEN: expression("secrets.PULUMI_ACCESS_TOKEN"),
          PULUMI_BACKEND_URL: expression("vars.PULUMI_BACKEND_URL"),
          PULUMI_CONFIG_PASSPHRASE: expression("secrets.PULUMI_CONFIG_PASSPHRASE"),
        },
      },
    ]);
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.snapshot).toBe("vite-node scripts/snapshot.ts --");
  });

  it("Renovate keeps the pinned action digests current", () => {
    const renovate = JSON.parse(readFileSync(join(root, "renovate.json"), "utf8")) as { extends: string[] };
    expect(renovate.extends).toContain("helpers:pinGitHubActionDigests");
  });
});
