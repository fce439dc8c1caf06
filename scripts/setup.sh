#!/usr/bin/env bash
# One setup command for a fresh machine: `npm run setup` (runs before `npm ci`; it runs it).
# Reuses what is there; builds what is missing into a cache outside the repo, keyed by version.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/toolchain.env
source scripts/toolchain.env

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/talos-cluster"
mkdir -p "$CACHE/bin"
step() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }
pkgver() { node -p "require('./package.json').dependencies['$1']"; }

step "Node.js $(node --version), npm $(npm --version 2>/dev/null)"
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  step "Go is missing: installing Debian's golang-go"
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi
step "$(go version)"

step "Node.js dependencies (npm ci)"
t=$(date +%s)
if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "node_modules is current; skipping"
else
  npm ci --no-audit --no-fund 2>&1 | grep -v 'Unknown user config' || true
  [ -d node_modules/@pulumi/pulumi ] || { echo "npm ci failed" >&2; exit 1; }
fi
echo "done in $(elapsed "$t")"

# Go tools: built once per version into the cache, then linked where the scripts look.
build_go_tool() { # name module@version
  local name=$1 target=$2 out="$CACHE/bin/$1-${2##*@}"
  if [ -x "$out" ]; then echo "$name ${2##*@}: cached"; else
    echo "$name ${2##*@}: building (about a minute on a cold cache)"
    local t; t=$(date +%s)
    GOBIN="$CACHE/gobin-$name" go install "$target"
    mv "$CACHE/gobin-$name/$name" "$out" && rm -rf "$CACHE/gobin-$name"
    echo "$name: built in $(elapsed "$t")"
  fi
  ln -sf "$out" "node_modules/.bin/$name"
}
step "Go tools"
if ! command -v shellcheck >/dev/null 2>&1; then
  # actionlint checks workflow scripts with shellcheck when it is there; make that true everywhere.
  echo "shellcheck: installing Debian's package"
  apt-get update -qq >/dev/null && apt-get install -y -qq shellcheck >/dev/null
fi
build_go_tool actionlint "github.com/rhysd/actionlint/cmd/actionlint@v${ACTIONLINT_VERSION}"
# The project's own Go programs: go build's cache makes a second run a no-op.
build_own() { # name dir package
  local t; t=$(date +%s)
  (cd "$2" && go build -o "$CACHE/bin/$1" "$3")
  ln -sf "$CACHE/bin/$1" "node_modules/.bin/$1"
  echo "$1: built in $(elapsed "$t")"
}
build_own talos-sim test/sim ./cmd/talos-sim
build_own nodecheck tools/nodecheck .

# The Pulumi engine: the CLI, the Node.js language host and the provider plugins are Go modules.
# Check each can be had before spending minutes on builds, and say exactly what is missing.
step "Pulumi toolchain"
if command -v pulumi >/dev/null 2>&1 && pulumi plugin ls 2>/dev/null | grep -q '^talos '; then
  echo "using $(command -v pulumi) ($(pulumi version)) with its installed plugins"
  ln -sf "$(command -v pulumi)" node_modules/.bin/pulumi
  exit 0
fi
PULUMI_VERSION=$(pkgver @pulumi/pulumi)
missing=()
probe() { # module@version
  local err
  # Ask the proxy only (no fallback to the origin host, which is unreachable here), and keep
  # registry host names out of the log.
  err=$(cd "$CACHE" || exit; GOPROXY="$(go env GOPROXY | sed -E 's/[,|]direct//g')" GOFLAGS=-mod=mod \
    go mod download -json "$1" 2>/dev/null | node -e '
    let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let e;try{e=JSON.parse(s).Error||""}catch{e=s.trim()||"no answer"}
    console.log(e.replace(/https?:\/\/[^\s\/]+/g,"<module proxy>").replace(/\s+/g," "))})' || true)
  if [ -z "$err" ]; then echo "  available: $1"; else echo "  NOT AVAILABLE: $1"; echo "    $err"; missing+=("$1"); fi
}
probe "github.com/pulumi/pulumi/pkg/v3@v${PULUMI_VERSION}"
probe "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3@v${PULUMI_VERSION}"
probe "${TALOS_PROVIDER_MODULE}@v${TALOS_PROVIDER_VERSION}"
probe "${KUBERNETES_PROVIDER_MODULE}@v$(pkgver @pulumi/kubernetes)"
probe "${COMMAND_PROVIDER_MODULE}@v$(pkgver @pulumi/command)"
if [ ${#missing[@]} -gt 0 ]; then
  cat <<MSG

The Pulumi engine cannot be built on this machine: ${#missing[@]} module(s) above are refused by
the Go module proxy it reaches. Unit tests (npm test) do not need the engine and run as usual;
'pulumi preview' / 'pulumi up' need a machine where these modules, or the released binaries, can
be had. See README.md, "Toolchain".
MSG
  # A machine that must have the engine (a deploy job) sets SETUP_REQUIRE_ENGINE=1.
  [ "${SETUP_REQUIRE_ENGINE:-0}" = 1 ] && exit 1
fi
exit 0
