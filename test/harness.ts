// Pulumi mocks that record every registered resource with its inputs and options, so tests can
// assert on the plan: which resources, which inputs, in which order, depending on what.
import * as pulumi from "@pulumi/pulumi";

export interface PlannedResource {
  type: string;
  name: string;
  /** Inputs as plain values, secrets unwrapped. */
  inputs: Record<string, unknown>;
  /** Top-level input keys whose value is (or holds) a secret. */
  secretInputs: string[];
  parent?: string;
  dependsOn: string[];
  protect: boolean;
  retainOnDelete: boolean;
  ignoreChanges: string[];
  replaceOnChanges: string[];
  additionalSecretOutputs: string[];
  provider?: string;
  resource: pulumi.Resource;
}

export interface Plan {
  resources: PlannedResource[];
  /** Provider function calls (data sources), in call order, secrets unwrapped. */
  calls: { token: string; inputs: Record<string, unknown> }[];
  /** Resources of one type, in registration order. */
  ofType(type: string): PlannedResource[];
  byName(name: string): PlannedResource;
}

/** Canned outputs the mocked providers return, keyed by type token; an `id` key sets the resource id. */
export type MockOutputs = Record<string, (inputs: Record<string, unknown>, name: string) => Record<string, unknown>>;

/**
 * Runs `program` against mocks and returns every resource it declared. The recorder rides on a
 * transformation the program must pass to its top-level components (`opts.transformations`).
 */
export async function plan(
  program: (record: pulumi.ResourceTransformation) => void,
  outputs: MockOutputs = {},
  callResults: Record<string, (args: Record<string, unknown>) => Record<string, unknown>> = {},
): Promise<Plan> {
  const byResource = new Map<pulumi.Resource, PlannedResource>();
  const inputsByName = new Map<string, { inputs: Record<string, unknown>; secretInputs: string[] }>();
  const names = new Map<pulumi.Resource, string>();
  const calls: Plan["calls"] = [];

  pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        const secretInputs = Object.keys(args.inputs).filter((k) => holdsSecret(args.inputs[k]));
        const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
        inputsByName.set(`${args.type}::${args.name}`, { inputs, secretInputs });
        const { id, ...extra } = outputs[args.type]?.(inputs, args.name) ?? {};
        return { id: typeof id === "string" ? id : `${args.name}-id`, state: { ...args.inputs, ...extra } };
      },
      call: (args) => {
        const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
        calls.push({ token: args.token, inputs });
        return callResults[args.token]?.(inputs) ?? {};
      },
    },
    "talos-cluster",
    "test",
    true,
  );

  const pending: { resource: pulumi.Resource; type: string; name: string; opts: pulumi.ResourceOptions }[] = [];
  const record: pulumi.ResourceTransformation = (args) => {
    names.set(args.resource, args.name);
    pending.push({ resource: args.resource, type: args.type, name: args.name, opts: args.opts });
    return undefined;
  };
  program(record);

  // Every declared resource resolves its URN once the mock monitor registered it.
  await Promise.all(pending.map((p) => promiseOf(p.resource.urn)));

  for (const p of pending) {
    const deps = await resolveDependsOn(p.opts.dependsOn);
    const custom = p.opts as pulumi.CustomResourceOptions;
    byResource.set(p.resource, {
      type: p.type,
      name: p.name,
      ...(inputsByName.get(`${p.type}::${p.name}`) ?? { inputs: {}, secretInputs: [] }),
      parent: p.opts.parent ? names.get(p.opts.parent) : undefined,
      dependsOn: deps.map((d) => names.get(d) ?? "<unknown>"),
      protect: p.opts.protect === true,
      retainOnDelete: p.opts.retainOnDelete === true,
      ignoreChanges: p.opts.ignoreChanges ?? [],
      replaceOnChanges: p.opts.replaceOnChanges ?? [],
      additionalSecretOutputs: custom.additionalSecretOutputs ?? [],
      provider: custom.provider ? names.get(custom.provider) : undefined,
      resource: p.resource,
    });
  }
  const resources = [...byResource.values()];
  return {
    resources,
    calls,
    ofType: (type) => resources.filter((r) => r.type === type),
    byName: (name) => {
      const found = resources.find((r) => r.name === name);
      if (!found) throw new Error(`no resource named ${name}; have ${resources.map((r) => r.name).join(", ")}`);
      return found;
    },
  };
}

// How the SDK marks a secret value on the wire to the (mock) engine.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

function isSecretWrapper(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] === "1b47061264138c4ac30d75fd1eb44270";
}

function holdsSecret(v: unknown): boolean {
  if (isSecretWrapper(v)) return true;
  if (Array.isArray(v)) return v.some(holdsSecret);
  if (typeof v === "object" && v !== null) return Object.values(v).some(holdsSecret);
  return false;
}

function unwrapSecrets(v: unknown): unknown {
  if (isSecretWrapper(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map(unwrapSecrets);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)]));
  }
  return v;
}

async function resolveDependsOn(dependsOn: pulumi.ResourceOptions["dependsOn"]): Promise<pulumi.Resource[]> {
  if (dependsOn === undefined) return [];
  const top: unknown = pulumi.Output.isInstance(dependsOn) ? await promiseOf<unknown>(dependsOn as pulumi.Output<unknown>) : dependsOn;
  const items: unknown[] = Array.isArray(top) ? top : [top];
  const out: pulumi.Resource[] = [];
  for (const item of items) {
    const value: unknown = pulumi.Output.isInstance(item) ? await promiseOf<unknown>(item as pulumi.Output<unknown>) : item;
    if (pulumi.Resource.isInstance(value)) out.push(value);
  }
  return out;
}

/** The value of an output, once known. */
export function promiseOf<T>(output: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) => {
    pulumi.output(output).apply((v) => {
      resolve(v as T);
      return v;
    });
  });
}

/** Whether an output is marked secret. */
export function isSecret(output: pulumi.Output<unknown>): Promise<boolean> {
  return pulumi.isSecret(output);
}
