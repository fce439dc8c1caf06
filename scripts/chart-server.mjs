// The fixture chart server of ./chart-repo.ts, in a process of its own: the engine tests run the
// CLI synchronously, which blocks their own event loop, so a server inside them would never answer.
// Usage: node chart-server.mjs <folder> <host> <port> <request log> <ready file> [--keep]
// --keep: runs until SIGTERM (the lab); otherwise it exits when its parent closes its stdin.
import { appendFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, normalize } from "node:path";

const [root, host, port, log, ready, keep] = process.argv.slice(2);
const types = { ".yaml": "application/x-yaml", ".tgz": "application/gzip" };

const server = createServer((req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://fixture").pathname));
  appendFileSync(log, `${req.method} ${path}\n`);
  const file = join(root, path);
  let body;
  try {
    if ((req.method !== "GET" && req.method !== "HEAD") || path.includes("..") || !statSync(file).isFile()) throw new Error();
    body = readFileSync(file);
  } catch {
    res.writeHead(404, { "content-type": "text/plain" }).end(`${path}: not found\n`);
    return;
  }
  const type = types[path.slice(path.lastIndexOf("."))] ?? "text/plain";
  res.writeHead(200, { "content-type": type, "content-length": body.length }).end(req.method === "HEAD" ? undefined : body);
});
server.listen(Number(port), host, () => writeFileSync(ready, `${process.pid}\n`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
if (keep !== "--keep") {
  // Dies with the test run that started it.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}
