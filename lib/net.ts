// IPv4 and CIDR arithmetic for config validation. Pure functions, no Pulumi.

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** The address as a 32-bit unsigned number, or undefined when it is not dotted-quad IPv4. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export interface Cidr {
  network: number;
  prefix: number;
}

/** An IPv4 CIDR such as 10.244.0.0/16; host bits must be zero, as Kubernetes requires. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, prefixText, ...rest] = text.split("/");
  if (rest.length > 0 || addr === undefined || prefixText === undefined) return undefined;
  if (!/^\d{1,2}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  const network = parseIPv4(addr);
  if (network === undefined || prefix > 32) return undefined;
  if (network % blockSize(prefix) !== 0) return undefined;
  return { network, prefix };
}

function blockSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address < cidr.network + blockSize(cidr.prefix);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b.network) || cidrContains(b, a.network);
}

/** RFC 1123 hostname label, lower case: what Talos and Kubernetes accept as a node name. */
export function isHostnameLabel(text: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(text);
}

/** A DNS name of one or more RFC 1123 labels. */
export function isDnsName(text: string): boolean {
  return text.length <= 253 && text.split(".").every(isHostnameLabel);
}
