// CrossGuard policy pack: `pulumi preview --policy-pack policy`. The rules live in rules.ts.
import { PolicyPack, type PolicyResource, type ResourceValidationArgs } from "@pulumi/policy";
import {
  credentialsSecret,
  installImagesFromSchematic,
  knownValues,
  type PlannedResource,
  prodControlPlaneQuorum,
  prodCredentialsExpiry,
  schematicHasIntelUcode,
  secretsProtected,
} from "./rules";

function planned(r: ResourceValidationArgs | PolicyResource): PlannedResource {
  return {
    type: r.type,
    name: r.name,
    urn: r.urn,
    props: knownValues(r.props) as Record<string, unknown>,
    protect: r.opts.protect,
    additionalSecretOutputs: r.opts.additionalSecretOutputs,
  };
}

const perResource = (name: string, description: string, rule: (r: PlannedResource) => string | undefined) => ({
  name,
  description,
  enforcementLevel: "mandatory" as const,
  validateResource: (args: ResourceValidationArgs, reportViolation: (message: string) => void) => {
    const message = rule(planned(args));
    if (message !== undefined) reportViolation(message);
  },
});

new PolicyPack("talos-cluster", {
  policies: [
    perResource("schematic-has-intel-ucode", "The Image Factory schematic contains siderolabs/intel-ucode.", schematicHasIntelUcode),
    perResource("machine-secrets-protected", "The machine secrets are protected from deletion.", secretsProtected),
    perResource("credentials-are-secret", "Outputs carrying cluster credentials are secret.", credentialsSecret),
    {
      name: "install-image-from-schematic",
      description: "Every node installs the factory installer of the stack's schematic.",
      enforcementLevel: "mandatory",
      validateStack: (args, reportViolation) => {
        for (const message of installImagesFromSchematic(args.resources.map(planned))) reportViolation(message);
      },
    },
    {
      name: "prod-control-plane-quorum",
      description: "A production stack has an odd number, at least three, of control planes.",
      enforcementLevel: "mandatory",
      validateStack: (args, reportViolation) => {
        for (const message of prodControlPlaneQuorum(args.resources.map(planned))) reportViolation(message);
      },
    },
    {
      name: "prod-credentials-expiry",
      description: "No client certificate or CA of a production cluster has 14 days or fewer left.",
      enforcementLevel: "mandatory",
      validateStack: (args, reportViolation) => {
        for (const message of prodCredentialsExpiry(args.resources.map(planned), new Date())) reportViolation(message);
      },
    },
  ],
});
