#!/usr/bin/env bash
# One setup command for a fresh machine: `npm run setup` (it runs `npm ci` itself, once the local
# SDK packages it needs exist). Reuses what is there: a `pulumi` CLI on PATH at the pinned version
# or newer, plugins already installed at the pinned versions, and its own cache; builds what is
# missing into a cache outside the repo, keyed by version. TALOS_CLUSTER_BUILD_TOOLCHAIN=1 builds
# the engine and plugins whatever is installed (for air-gapped mirrors).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/toolchain.env
source scripts/toolchain.env

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/talos-cluster"
PLUGINS="${PULUMI_HOME:-$HOME/.pulumi}/plugins"
mkdir -p "$CACHE/bin"
step() { printf '\n==> %s\n' "$*"; }
elapsed() { echo "$(($(date +%s) - $1))s"; }
build_all() { [ "${TALOS_CLUSTER_BUILD_TOOLCHAIN:-}" = 1 ]; }
# version_at_least A B: dotted version A >= B.
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# Node.js: the one on PATH when package.json's engines accept it, or else the one .nvmrc pins,
# installed into the cache; everything below, and every `npm run` and `npx` after (through
# node_modules/.bin/node, linked at the end), runs on it.
# shellcheck source=scripts/node.sh
source scripts/node.sh
use_supported_node install
step "Node.js $(node --version)${NODE_BIN_DIR:+ (installed in $NODE_BIN_DIR, as .nvmrc pins)}, npm $(npm --version 2>/dev/null)"
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  step "Go is missing: installing Debian's golang-go"
  apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi
step "$(go version)"

# Go tools: built once per version into the cache; linked into node_modules/.bin at the end.
build_go_tool() { # name module@version
  local name=$1 target=$2 out="$CACHE/bin/$1-${2##*@}"
  if [ -x "$out" ]; then echo "$name ${2##*@}: cached"; else
    echo "$name ${2##*@}: building (about a minute on a cold cache)"
    local t; t=$(date +%s)
    GOBIN="$CACHE/gobin-$name" go install "$target"
    mv "$CACHE/gobin-$name/$name" "$out" && rm -rf "$CACHE/gobin-$name"
    echo "$name: built in $(elapsed "$t")"
  fi
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
  (cd "$2" && GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/siderolabs" go build -trimpath -o "$CACHE/bin/$1" "$3")
  echo "$1: built in $(elapsed "$t")"
}
# One Talos library for everything that renders, validates, reads or simulates a machine config:
# a module pinning another would let the preview judge a config by other rules than the node's.
for mod in $TALOS_LIBRARY_MODULES; do
  grep -q "^[[:space:]]github.com/siderolabs/talos/pkg/machinery v$TALOS_LIBRARY_VERSION\b" "$mod/go.mod" ||
    { echo "$mod/go.mod does not require github.com/siderolabs/talos/pkg/machinery v$TALOS_LIBRARY_VERSION (TALOS_LIBRARY_VERSION in scripts/toolchain.env)" >&2; exit 1; }
done
echo "Talos library (pkg/machinery) v$TALOS_LIBRARY_VERSION in: $TALOS_LIBRARY_MODULES"
build_own talos-sim test/sim ./cmd/talos-sim
build_own talosvalidate talosvalidate ./cmd/talosvalidate
# talosctl, the real Talos CLI at the release the project targets, for operators and for the tests
# that check the simulator with a client nobody here wrote. Talos' go.mod has replace lines, so
# `go install module@version` cannot build it: it comes from the wrapper scripts/toolchain/talosctl
# (go.mod/go.sum are the pins), once per wrapper. Some of its modules are missing from the checksum
# database; go.sum holds their hashes.
TALOSCTL_WRAPPER=scripts/toolchain/talosctl
TALOSCTL="$CACHE/bin/talosctl-v$TALOSCTL_VERSION-$(cat "$TALOSCTL_WRAPPER/go.mod" "$TALOSCTL_WRAPPER/go.sum" | sha256sum | cut -c1-12)"
if [ -x "$TALOSCTL" ]; then echo "talosctl v$TALOSCTL_VERSION: cached"; else
  grep -q "^[[:space:]]github.com/siderolabs/talos v$TALOSCTL_VERSION\b" "$TALOSCTL_WRAPPER/go.mod" ||
    { echo "$TALOSCTL_WRAPPER/go.mod does not require talos v$TALOSCTL_VERSION (TALOSCTL_VERSION in scripts/toolchain.env)" >&2; exit 1; }
  echo "talosctl v$TALOSCTL_VERSION: building (several minutes on a cold cache: docs/toolchain.md)"
  t=$(date +%s)
  # As Talos' Makefile builds it: no cgo, tag grpcnotrace, stripped. The version it reports is
  # machinery's embedded release tag (pkg/machinery/gendata), which -X cannot override.
  (cd "$TALOSCTL_WRAPPER" &&
    CGO_ENABLED=0 GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/siderolabs,github.com/smira,github.com/unix4ever" \
      go build -trimpath -tags grpcnotrace -ldflags "-s -w" -o "$TALOSCTL.tmp" github.com/siderolabs/talos/cmd/talosctl)
  built=$("$TALOSCTL.tmp" version --client --short 2>&1 || true)
  case "$built" in *"v$TALOSCTL_VERSION"*) ;; *) echo "talosctl built, but reports \"$built\", not v$TALOSCTL_VERSION" >&2; exit 1 ;; esac
  mv "$TALOSCTL.tmp" "$TALOSCTL"
  echo "talosctl: built in $(elapsed "$t")"
fi

# etcd and kube-apiserver, the control plane talos-sim runs for real (-etcd, -kube-apiserver), from
# the wrappers scripts/toolchain/etcd and scripts/toolchain/kube-apiserver (go.mod/go.sum are the
# pins): built once per wrapper, into a file named after a hash of it, so a second run builds nothing.
wrapper_sum() { # dir: a hash of the wrapper's Go sources and pins
  (cd "$1" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 cat) |
    sha256sum | cut -c1-12
}
build_wrapped() { # name version wrapper module package ldflags duration [version-args]: sets BUILT to the binary
  local name=$1 version=$2 wrapper=$3 module=$4 package=$5 ldflags=$6 duration=$7 version_args=${8:---version} t built
  BUILT="$CACHE/bin/$name-v$version-$(wrapper_sum "$wrapper")"
  if [ -x "$BUILT" ]; then echo "$name v$version: cached"; return; fi
  grep -Eq "(^require|^[[:space:]])[[:space:]]*$module v$version([[:space:]]|$)" "$wrapper/go.mod" ||
    { echo "$wrapper/go.mod does not require $module v$version (scripts/toolchain.env)" >&2; exit 1; }
  echo "$name v$version: building ($duration on a cold cache, 2 cores)"
  t=$(date +%s)
  (cd "$wrapper" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$BUILT.tmp" "$package")
  # shellcheck disable=SC2086 # version_args is words: "version --client"
  built=$("$BUILT.tmp" $version_args 2>&1 || true)
  case "$built" in *"$version"*) ;; *) echo "$name built, but reports \"$built\", not v$version" >&2; exit 1 ;; esac
  mv "$BUILT.tmp" "$BUILT"
  echo "$name: built in $(elapsed "$t")"
}
build_wrapped etcd "$ETCD_VERSION" scripts/toolchain/etcd go.etcd.io/etcd/server/v3 . "" "about a minute"
ETCD="$BUILT"
# kubectl and client-go refuse a server without a version: stamp the release, as Kubernetes' build does.
build_wrapped kube-apiserver "$KUBE_APISERVER_VERSION" scripts/toolchain/kube-apiserver k8s.io/kubernetes \
  k8s.io/kubernetes/cmd/kube-apiserver \
  "-X k8s.io/component-base/version.gitVersion=v$KUBE_APISERVER_VERSION -X k8s.io/component-base/version.gitMajor=${KUBE_APISERVER_VERSION%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_APISERVER_VERSION" | cut -d. -f2)" \
  "about 8 minutes"
KUBE_APISERVER="$BUILT"
# kubectl at the same release, from the same k8s.io/kubernetes module (scripts/toolchain/kubectl):
# `npx kubectl` works against the lab (npm run lab) without one installed. With kube-apiserver's
# build cache warm it compiles only kubectl's own packages: about 2.5 minutes, 2 cores.
build_wrapped kubectl "$KUBE_APISERVER_VERSION" scripts/toolchain/kubectl k8s.io/kubernetes \
  k8s.io/kubernetes/cmd/kubectl \
  "-X k8s.io/component-base/version.gitVersion=v$KUBE_APISERVER_VERSION -X k8s.io/component-base/version.gitMajor=${KUBE_APISERVER_VERSION%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_APISERVER_VERSION" | cut -d. -f2)" \
  "about 3 minutes after kube-apiserver's" "version --client"
KUBECTL="$BUILT"

# The Pulumi engine: the CLI, the Node.js language host and the Talos plugin are Go modules,
# built from the wrapper modules in scripts/toolchain (their go.mod/go.sum are the pins). Each
# build lands in a cache folder named after a hash of its wrapper, so a second run builds nothing.
step "Pulumi toolchain"
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/siderolabs"
wrapper_hash() { # dirs... : the sources and pins of the wrappers, plus the version labels
  {
    find "$@" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 cat
    echo "$PULUMI_CLI_VERSION $TALOS_PLUGIN_VERSION"
  } | sha256sum | cut -c1-12
}
# A CLI on PATH at the pinned version or newer is used as it is (npm run puts node_modules/.bin
# first on PATH: a link there to an earlier build counts too).
PULUMI=""
if ! build_all && found=$(command -v pulumi 2>/dev/null); then
  have=$("$found" version 2>/dev/null || true)
  if version_at_least "${have#v}" "$PULUMI_CLI_VERSION"; then
    PULUMI=$(readlink -f "$found")
    echo "pulumi $have on PATH ($PULUMI): reused, nothing built"
  else
    echo "pulumi on PATH is ${have:-unreadable}, older than v$PULUMI_CLI_VERSION: building the pinned one"
  fi
fi
ENGINE="$CACHE/engine-$(wrapper_hash scripts/toolchain/pulumi scripts/toolchain/language-nodejs)"
if [ -n "$PULUMI" ]; then
  :
elif [ -x "$ENGINE/pulumi" ] && [ -x "$ENGINE/pulumi-language-nodejs" ] && [ -x "$ENGINE/sdkgen" ]; then
  echo "pulumi v$PULUMI_CLI_VERSION, language host, sdkgen: cached in $ENGINE"
  PULUMI="$ENGINE/pulumi"
else
  mkdir -p "$ENGINE.tmp"
  t=$(date +%s)
  echo "pulumi v$PULUMI_CLI_VERSION: building the CLI (about 5 minutes on a cold cache, 2 cores)"
  (cd scripts/toolchain/pulumi && go build -trimpath -o "$ENGINE.tmp/pulumi" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_CLI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  (cd scripts/toolchain/pulumi && go build -trimpath -ldflags "-s -w" -o "$ENGINE.tmp/sdkgen" ./sdkgen)
  echo "  built in $(elapsed "$t")"
  t=$(date +%s)
  # The CLI finds the language host beside its own (symlink-resolved) executable.
  echo "pulumi-language-nodejs: building (under a minute)"
  (cd scripts/toolchain/language-nodejs && go build -trimpath -ldflags "-s -w" -o "$ENGINE.tmp/pulumi-language-nodejs" \
    github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs)
  echo "  built in $(elapsed "$t")"
  rm -rf "$ENGINE" && mv "$ENGINE.tmp" "$ENGINE"
  PULUMI="$ENGINE/pulumi"
fi

# A plugin already installed at its pinned version is used as it is; one of the project's own
# (the talos plugin carries the create-with-auto wrapper) only when installed from the same sources,
# which install_plugin records beside it.
installed() { # name version [sources-hash]: the installed plugin binary, if it may be reused
  local dir="$PLUGINS/resource-$1-v$2"
  build_all && return 1
  [ -x "$dir/pulumi-resource-$1" ] || return 1
  [ -z "${3:-}" ] || [ "$(cat "$dir/.talos-cluster-sources" 2>/dev/null)" = "$3" ] || return 1
  echo "$dir/pulumi-resource-$1"
}
# The schema an SDK is generated from, beside a binary (built here or installed).
schema_of() { # binary dir
  [ -s "$2/schema.json" ] || "$PULUMI" package get-schema "$1" >"$2/schema.json"
}

TALOS="$CACHE/talos-$(wrapper_hash talosplugin)"
if reuse=$(installed talos "$TALOS_PLUGIN_VERSION" "${TALOS##*/}"); then
  echo "talos plugin v$TALOS_PLUGIN_VERSION: installed ($reuse), reused"
  mkdir -p "$TALOS" && schema_of "$reuse" "$TALOS"
elif [ -x "$TALOS/pulumi-resource-talos" ] && [ -s "$TALOS/schema.json" ]; then
  echo "talos plugin v$TALOS_PLUGIN_VERSION: cached in $TALOS"
else
  t=$(date +%s)
  echo "talos plugin v$TALOS_PLUGIN_VERSION: building (about 4 minutes on a cold cache)"
  rm -rf "$TALOS.tmp" && mkdir -p "$TALOS.tmp" && cp -r talosplugin "$TALOS.tmp/src"
  ldflags="-s -w -X talos-cluster/talosplugin/info.Version=$TALOS_PLUGIN_VERSION"
  (cd "$TALOS.tmp/src" && go build -trimpath -ldflags "$ldflags" -o ../pulumi-tfgen-talos ./cmd/pulumi-tfgen-talos)
  # tfgen writes the schema into the plugin's folder, where the plugin embeds it.
  upstream=$(cd "$TALOS.tmp/src" && go list -m -f '{{.Dir}}' github.com/siderolabs/terraform-provider-talos)
  (cd "$TALOS.tmp/src" && TALOS_UPSTREAM_DIR="$upstream" PULUMI_CONVERT=0 \
    ../pulumi-tfgen-talos schema --out cmd/pulumi-resource-talos >../tfgen.log 2>&1) \
    || { cat "$TALOS.tmp/tfgen.log" >&2; exit 1; }
  (cd "$TALOS.tmp/src" && go build -trimpath -ldflags "$ldflags" -o ../pulumi-resource-talos ./cmd/pulumi-resource-talos)
  cp "$TALOS.tmp/src/cmd/pulumi-resource-talos/schema.json" "$TALOS.tmp/schema.json"
  rm -rf "$TALOS.tmp/src" "$TALOS.tmp/pulumi-tfgen-talos" "$TALOS.tmp/tfgen.log" "$TALOS" && mv "$TALOS.tmp" "$TALOS"
  echo "  built in $(elapsed "$t")"
fi
# The Kubernetes plugin embeds its schema, which a generator in its own folder writes; the module
# cache is read-only, so the build runs on a copy, with the SDK module it replaces to ../sdk
# (absent from the module) taken from the proxy instead.
K8S="$CACHE/kubernetes-$(echo "$KUBERNETES_PROVIDER_MODULE $KUBERNETES_SDK_MODULE $KUBERNETES_PLUGIN_VERSION" | sha256sum | cut -c1-12)"
if reuse=$(installed kubernetes "$KUBERNETES_PLUGIN_VERSION"); then
  echo "kubernetes plugin v$KUBERNETES_PLUGIN_VERSION: installed ($reuse), reused"
elif [ -x "$K8S/pulumi-resource-kubernetes" ]; then
  echo "kubernetes plugin v$KUBERNETES_PLUGIN_VERSION: cached in $K8S"
else
  t=$(date +%s)
  echo "kubernetes plugin v$KUBERNETES_PLUGIN_VERSION: building (5 to 10 minutes on a cold cache)"
  src=$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$KUBERNETES_PROVIDER_MODULE" | node -e '
    let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const m=JSON.parse(s);if(m.Error){console.error(m.Error);process.exit(1)}console.log(m.Dir)})')
  rm -rf "$K8S.tmp" && mkdir -p "$K8S.tmp" && cp -r "$src" "$K8S.tmp/src" && chmod -R u+w "$K8S.tmp/src"
  (cd "$K8S.tmp/src" &&
    go mod edit -dropreplace="${KUBERNETES_SDK_MODULE%@*}" -replace="${KUBERNETES_SDK_MODULE%@*}=$KUBERNETES_SDK_MODULE" &&
    GOFLAGS=-mod=mod go mod tidy &&
    (cd cmd/pulumi-resource-kubernetes && VERSION="$KUBERNETES_PLUGIN_VERSION" go run generate.go) &&
    go build -trimpath -o ../pulumi-resource-kubernetes \
      -ldflags "-s -w -X ${KUBERNETES_PROVIDER_MODULE%@*}/pkg/version.Version=$KUBERNETES_PLUGIN_VERSION" \
      ./cmd/pulumi-resource-kubernetes)
  rm -rf "$K8S.tmp/src" "$K8S" && mv "$K8S.tmp" "$K8S"
  echo "  built in $(elapsed "$t")"
fi
# The project's own provider (talosnode/: renders machine configs, reads and rolls the nodes), a Go
# module of its own, since pulumi-go-provider v1.1.2 compiles against pulumi pkg/sdk v3.169.0, not
# the CLI's 3.274.1. It compiles in talosvalidate's renderer (go.mod replace), so both key the build.
TALOSNODE="$CACHE/talosnode-$(wrapper_hash talosnode talosvalidate)"
if reuse=$(installed talosnode "$TALOSNODE_VERSION" "${TALOSNODE##*/}"); then
  echo "talosnode plugin v$TALOSNODE_VERSION: installed ($reuse), reused"
  mkdir -p "$TALOSNODE" && schema_of "$reuse" "$TALOSNODE"
elif [ -x "$TALOSNODE/pulumi-resource-talosnode" ] && [ -s "$TALOSNODE/schema.json" ]; then
  echo "talosnode plugin v$TALOSNODE_VERSION: cached in $TALOSNODE"
else
  t=$(date +%s)
  echo "talosnode plugin v$TALOSNODE_VERSION: building (about 2 minutes on a cold cache)"
  rm -rf "$TALOSNODE.tmp" && mkdir -p "$TALOSNODE.tmp"
  (cd talosnode && go build -trimpath -ldflags "-s -w -X main.Version=$TALOSNODE_VERSION" \
    -o "$TALOSNODE.tmp/pulumi-resource-talosnode" ./cmd/pulumi-resource-talosnode)
  schema_of "$TALOSNODE.tmp/pulumi-resource-talosnode" "$TALOSNODE.tmp"
  rm -rf "$TALOSNODE" && mv "$TALOSNODE.tmp" "$TALOSNODE"
  echo "  built in $(elapsed "$t")"
fi
# npm run snapshot's command (talosnode/cmd/talosnode-snapshot): the same module, build cache and
# folder as the provider, so it costs a link once the provider is built, and nothing after.
if [ -x "$TALOSNODE/talosnode-snapshot" ]; then echo "talosnode-snapshot: cached in $TALOSNODE"; else
  t=$(date +%s)
  (cd talosnode && go build -trimpath -ldflags "-s -w" -o "$TALOSNODE/talosnode-snapshot.tmp" ./cmd/talosnode-snapshot)
  mv "$TALOSNODE/talosnode-snapshot.tmp" "$TALOSNODE/talosnode-snapshot"
  echo "talosnode-snapshot: built in $(elapsed "$t")"
fi

install_plugin() { # name version build-dir
  local dir="$PLUGINS/resource-$1-v$2" binary="$3/pulumi-resource-$1"
  if [ ! -x "$binary" ] || cmp -s "$dir/pulumi-resource-$1" "$binary"; then
    echo "$1 plugin v$2: installed"
  else
    "$PULUMI" plugin rm resource "$1" "$2" --yes >/dev/null 2>&1 || true
    "$PULUMI" plugin install resource "$1" "$2" --file "$binary"
  fi
  # Which sources it came from (the build folder's name), for the next setup's reuse.
  echo "${3##*/}" >"$dir/.talos-cluster-sources"
}
install_plugin talos "$TALOS_PLUGIN_VERSION" "$TALOS"
install_plugin kubernetes "$KUBERNETES_PLUGIN_VERSION" "$K8S"
install_plugin talosnode "$TALOSNODE_VERSION" "$TALOSNODE"

# The TypeScript SDKs, generated from each plugin's own schema so SDK and plugin always match.
# package.json names them as local packages (file:sdks/...), so their sources must exist before
# npm installs; they compile after, against the project's @pulumi/pulumi.
SDKGEN="$(dirname "$PULUMI")/sdkgen"
sdk_sources() { # dir plugin-dir version
  local dir=$1 plugin=$2 version=$3
  [ "$(cat "$dir/.built-from" 2>/dev/null)" = "$plugin" ] && [ -f "$dir/bin/index.js" ] && return
  rm -rf "$dir"
  if [ -x "$SDKGEN" ]; then
    "$SDKGEN" "$plugin/schema.json" "$dir" "$version"
  else
    # A CLI from elsewhere has a language host that generates SDKs itself.
    "$PULUMI" package gen-sdk "$plugin/schema.json" --language nodejs --out "$dir.gen" >/dev/null
    mv "$dir.gen/nodejs" "$dir" && rm -rf "$dir.gen"
  fi
}
sdk_compile() { # package dir plugin-dir
  local package=$1 dir=$2 plugin=$3
  if [ "$(cat "$dir/.built-from" 2>/dev/null)" = "$plugin" ] && [ -f "$dir/bin/index.js" ]; then
    echo "$package: current"
    return
  fi
  local t; t=$(date +%s)
  npx tsc -p "$dir"
  echo "$plugin" >"$dir/.built-from"
  echo "$package: generated and compiled in $(elapsed "$t")"
}
sdk_sources sdks/talos "$TALOS" "$TALOS_PLUGIN_VERSION"
sdk_sources sdks/talosnode "$TALOSNODE" "$TALOSNODE_VERSION"

step "Node.js dependencies (npm ci)"
t=$(date +%s)
if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] && [ -e node_modules/@pulumiverse/talos ]; then
  echo "node_modules is current; skipping"
else
  npm ci --no-audit --no-fund 2>&1 | grep -v 'Unknown user config' || true
  [ -d node_modules/@pulumi/pulumi ] || { echo "npm ci failed" >&2; exit 1; }
fi
# The policy pack runs from its own folder with its own dependencies.
if [ -d policy/node_modules ] && [ policy/node_modules/.package-lock.json -nt policy/package-lock.json ]; then
  echo "policy/node_modules is current; skipping"
else
  (cd policy && { npm ci --no-audit --no-fund 2>&1 | grep -v 'Unknown user config' || true; })
  [ -d policy/node_modules/@pulumi/policy ] || { echo "npm ci in policy/ failed" >&2; exit 1; }
fi
echo "done in $(elapsed "$t")"
sdk_compile @pulumiverse/talos sdks/talos "$TALOS"
sdk_compile @talos-cluster/talosnode sdks/talosnode "$TALOSNODE"

# Where the scripts and tests look for the tools.
ln -sf "$PULUMI" node_modules/.bin/pulumi
ln -sf "$CACHE/bin/actionlint-v$ACTIONLINT_VERSION" node_modules/.bin/actionlint
ln -sf "$CACHE/bin/talos-sim" node_modules/.bin/talos-sim
ln -sf "$CACHE/bin/talosvalidate" node_modules/.bin/talosvalidate
ln -sf "$TALOSCTL" node_modules/.bin/talosctl
ln -sf "$ETCD" node_modules/.bin/etcd
ln -sf "$KUBE_APISERVER" node_modules/.bin/kube-apiserver
ln -sf "$KUBECTL" node_modules/.bin/kubectl
ln -sf "$TALOSNODE/talosnode-snapshot" node_modules/.bin/talosnode-snapshot
echo "node_modules/.bin/pulumi -> $PULUMI ($("$PULUMI" version))"
# `npm run` and `npx` put node_modules/.bin first on PATH: scripts, tests and the Pulumi language
# host they start find the installed Node.js there. A PATH's own supported node needs no link.
if [ -n "$NODE_BIN_DIR" ]; then
  ln -sf "$NODE_BIN_DIR/node" node_modules/.bin/node
  echo "node_modules/.bin/node -> $NODE_BIN_DIR/node ($(node --version))"
else
  case "$(readlink node_modules/.bin/node 2>/dev/null)" in "$CACHE"/node-v*) rm -f node_modules/.bin/node ;; esac
fi

# Builds for pins no longer in use only take disk space.
for dir in "$CACHE"/engine-* "$CACHE"/talos-* "$CACHE"/kubernetes-* "$CACHE"/talosnode-*; do
  case "$dir" in "$ENGINE" | "$(dirname "$PULUMI")" | "$TALOS" | "$K8S" | "$TALOSNODE" | *.tmp) ;; *) [ -d "$dir" ] && rm -rf "$dir" ;; esac
done
# Node.js releases other than the pinned one, once that is the one in use.
if [ -n "$NODE_BIN_DIR" ]; then
  for dir in "$CACHE"/node-v*; do
    case "$dir" in "${NODE_BIN_DIR%/bin}" | *.tmp) ;; *) [ -d "$dir" ] && rm -rf "$dir" ;; esac
  done
fi
for file in "$CACHE"/bin/talosctl-* "$CACHE"/bin/etcd-* "$CACHE"/bin/kube-apiserver-* "$CACHE"/bin/kubectl-*; do
  case "$file" in "$TALOSCTL" | "$ETCD" | "$KUBE_APISERVER" | "$KUBECTL") ;; *) rm -f "$file" ;; esac
done
