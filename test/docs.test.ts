// The README is the front door and docs/ the reference behind it: every page in docs/ is reachable
// from the README's table of contents, and no relative link in the project's Markdown leads nowhere.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { describe, expect, it } from "vitest";
import { supportTable } from "../lib/versions";

const root = join(__dirname, "..");
const read = (file: string) => readFileSync(join(root, file), "utf8");

/** The lines of a Markdown text outside fenced code blocks. */
function prose(markdown: string): string[] {
  let fenced = false;
  return markdown.split("\n").filter((line) => {
    if (/^\s*```/.test(line)) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Every relative link target of a Markdown text (outside code), as written. */
function relativeLinks(markdown: string): string[] {
  return prose(markdown)
    .map((line) => line.replace(/`[^`]*`/g, ""))
    .flatMap((line) => [...line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? ""))
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Whether a link from `from` (a path from the root) reaches a file, and the heading its #anchor names. */
function brokenLink(from: string, target: string, readFile: (file: string) => string | undefined): string | undefined {
  const [path = "", anchor] = target.split("#", 2);
  const file = path === "" ? from : normalize(join(dirname(from), path));
  if (file.startsWith("..")) return `${target}: leaves the repository`;
  const text = readFile(file);
  if (text === undefined) return `${target}: no file ${file}`;
  if (anchor !== undefined && !anchors(text).has(anchor)) return `${target}: ${file} has no heading #${anchor}`;
  return undefined;
}

const docs = readdirSync(join(root, "docs"))
  .filter((name) => name.endsWith(".md"))
  .map((name) => `docs/${name}`)
  .sort();
const markdown = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "*.md"], { cwd: root, encoding: "utf8" })
  .split("\n")
  .filter((file) => file !== "" && existsSync(join(root, file)))
  .sort();
const readIfFile = (file: string) => {
  const path = join(root, file);
  if (!existsSync(path)) return undefined;
  return statSync(path).isDirectory() ? "" : readFileSync(path, "utf8");
};

describe("the README's table of contents", () => {
  const readme = read("README.md");
  const start = readme.indexOf("\n## Contents\n");
  const end = readme.indexOf("\n## ", start + 1);
  const contents = start === -1 ? "" : readme.slice(start, end === -1 ? undefined : end);

  it("links every page in docs/", () => {
    expect(start, "README.md has a ## Contents section").toBeGreaterThan(0);
    expect(docs.length).toBeGreaterThan(3);
    const linked = new Set(relativeLinks(contents).map((target) => target.split("#")[0]));
    expect(docs.filter((page) => !linked.has(page))).toEqual([]);
  });

  it("keeps no section twice: no heading of the README is also a page's heading", () => {
    const own = anchors(readme);
    const twice = docs.flatMap((page) => [...anchors(read(page))].filter((a) => own.has(a)).map((a) => `${page}#${a}`));
    expect(twice).toEqual([]);
  });
});

describe("relative links in the project's Markdown", () => {
  it("covers the README, docs/ and the modules' READMEs", () => {
    expect(markdown).toEqual(expect.arrayContaining(["README.md", ...docs, "test/sim/README.md", "talosnode/README.md"]));
  });

  it.each(markdown)("%s: every relative link reaches a file, and its #anchor a heading there", (file) => {
    const broken = relativeLinks(read(file))
      .map((target) => brokenLink(file, target, readIfFile))
      .filter((problem) => problem !== undefined);
    expect(broken).toEqual([]);
  });

  it("finds a link to a missing file, a missing heading and a path out of the repository", () => {
    const files: Record<string, string> = { "README.md": "# Title\n\n## A `code` heading: yes\n", "docs/a.md": "# A\n" };
    const readFake = (file: string) => files[file];
    expect(brokenLink("README.md", "#a-code-heading-yes", readFake)).toBeUndefined();
    expect(brokenLink("docs/a.md", "../README.md#title", readFake)).toBeUndefined();
    expect(brokenLink("README.md", "docs/b.md", readFake)).toBe("docs/b.md: no file docs/b.md");
    expect(brokenLink("README.md", "docs/a.md#b", readFake)).toBe("docs/a.md#b: docs/a.md has no heading #b");
    expect(brokenLink("docs/a.md", "../../x.md", readFake)).toBe("../../x.md: leaves the repository");
    expect(relativeLinks("[a](b.md) [c](https://x) `[d](e.md)`\n```\n[f](g.md)\n```\n")).toEqual(["b.md"]);
    expect([...anchors("# A\n## A\n```\n# not\n```\n")]).toEqual(["a", "a-1"]);
  });
});

describe("the README's table of supported releases", () => {
  it("is lib/versions.ts' support data, which test/versions-compat.test.ts holds to Talos' library", () => {
    const readme = read("README.md");
    const table = /<!-- support-table:begin -->\n([\s\S]*?)\n<!-- support-table:end -->/.exec(readme)?.[1];
    // When this fails, paste supportTable() (lib/versions.ts) between the markers.
    expect(table).toBe(supportTable());
  });
});
