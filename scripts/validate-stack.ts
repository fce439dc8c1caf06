// Validates stack files without the engine or any machine, as the program does (the stack config,
// then Talos' validator on every node's config): `npm run validate -- dev prod`
// (stack names) or `npm run validate -- path/to/Pulumi.x.yaml` (files).
import { readFileSync } from "node:fs";
import { ConfigError } from "../lib/config/parse";
import { configFromStackFile } from "../lib/config/source";
import { counted } from "../lib/naming";
import { checkStack } from "../lib/validate";

const stacks = process.argv.slice(2);
if (stacks.length === 0) {
  console.error("usage: npm run validate -- <stack|file.yaml> ...   (a stack name reads Pulumi.<stack>.yaml)");
  process.exit(2);
}
let failed = false;
for (const arg of stacks) {
  const file = arg.endsWith(".yaml") ? arg : `Pulumi.${arg}.yaml`;
  const stack = arg.endsWith(".yaml") ? file : arg;
  try {
    const { config, warnings } = checkStack(configFromStackFile(readFileSync(file, "utf8")));
    console.log(
      `${stack}: ok (${counted(config.controlPlanes.length, "control plane")}, ${counted(config.workers.length, "worker")}, Talos ${config.talosVersion}, Kubernetes ${config.kubernetesVersion})`,
    );
    for (const w of warnings) console.log(`${stack}: warning: ${w}`);
  } catch (e) {
    failed = true;
    if (e instanceof ConfigError) console.error(`${stack}: ${e.message}`);
    else console.error(`${stack}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
process.exit(failed ? 1 : 0);
