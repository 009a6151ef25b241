#!/usr/bin/env python3
"""Checks on rendered Vitals manifests that a schema cannot make.

kubernetes-validate says each document is well-formed Kubernetes; this says the
documents fit together and keep the project's rules: every reference resolves, every
Service, PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy selects what it
is meant to, the pods meet the restricted Pod Security Standard, the probes, ports and
grace periods are the ones docs/deploy.md promises, only scoring can reach the learner,
and the binaries the manifests run are the ones the Dockerfile builds.

Usage: check_manifests.py RENDERED.yaml --name NAME --dockerfile PATH
           [--external KIND/NAME ...] [--pinned] [--collector-config PATH]
Exit status 0 when every check passes, 1 otherwise. Needs PyYAML.
"""

from __future__ import annotations

import argparse
import re
import sys
from urllib.parse import urlparse

import yaml

GRPC_PORT = 50051
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
# The services, the gRPC service each one reports in grpc.health.v1, and whether it is
# autoscaled (the learner is not: a training run lives in the pod that was asked).
SERVICES = {
    "ingestion": ("vitals.ingestion.v1.IngestionService", True),
    "profiles": ("vitals.profiles.v1.ProfilesService", True),
    "scoring": ("vitals.scoring.v1.ScoringService", True),
    "learner": ("vitals.learner.v1.LearnerService", False),
    "webhooks": ("vitals.webhooks.v1.WebhookService", False),
}


class Checker:
    """Collects the outcome of every named check."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, what: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"  FAIL [{self.name}] {what}")
            for p in problems:
                print(f"       - {p}")
        else:
            self.passed += 1
            print(f"  ok   [{self.name}] {what}")


def key(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: dict) -> dict:
    return doc["spec"]["template"]["metadata"].get("labels", {})


def matches(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, k, vals = e["operator"], e["key"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env") or []}


def config_value(docs: list[dict], container: dict, name: str) -> str | None:
    """The value a container sees for `name`: env wins over envFrom ConfigMaps."""
    env = env_of(container)
    if name in env and "value" in env[name]:
        return env[name]["value"]
    value = None
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref and ref["name"] in by_name:
            data = by_name[ref["name"]].get("data") or {}
            if name in data:
                value = data[name]
    return value


def service_for_url(docs: list[dict], url: str, namespace: str | None) -> tuple[dict | None, int | None]:
    """The rendered Service an http(s)://host:port URL names, if it is in this namespace."""
    u = urlparse(url)
    host = u.hostname or ""
    parts = host.split(".")
    if len(parts) > 1 and parts[1] != namespace:
        return None, u.port
    for d in docs:
        if d["kind"] == "Service" and d["metadata"]["name"] == parts[0]:
            return d, u.port
    return None, u.port


def run(args: argparse.Namespace) -> int:
    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    c = Checker(args.name)
    external = set(args.external or [])
    names = {key(d) for d in docs}
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    ns_docs = [d for d in docs if d["kind"] == "Namespace"]

    # --- names and namespaces -------------------------------------------------------
    dupes = sorted({k for k in names if sum(1 for d in docs if key(d) == k) > 1})
    c.check("object names are unique", [f"{k} appears twice" for k in dupes])
    problems = []
    if len(namespaces) != 1 or None in namespaces:
        problems.append(f"objects spread over namespaces {sorted(map(str, namespaces))}")
    elif ns_docs and ns_docs[0]["metadata"]["name"] not in namespaces:
        problems.append("the Namespace object is not the one the objects live in")
    for n in ns_docs:
        if n["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            problems.append(f"{key(n)} does not enforce the restricted Pod Security Standard")
    c.check("one namespace, restricted Pod Security Standard enforced", problems)
    namespace = next(iter(namespaces)) if len(namespaces) == 1 else None

    # --- references -----------------------------------------------------------------
    problems = []
    for w in workloads:
        spec = pod_spec(w)
        refs = []
        for v in spec.get("volumes") or []:
            if "secret" in v:
                refs.append(("Secret", v["secret"]["secretName"]))
            if "configMap" in v:
                refs.append(("ConfigMap", v["configMap"]["name"]))
        for ct in spec["containers"] + (spec.get("initContainers") or []):
            for src in ct.get("envFrom") or []:
                if "configMapRef" in src:
                    refs.append(("ConfigMap", src["configMapRef"]["name"]))
                if "secretRef" in src:
                    refs.append(("Secret", src["secretRef"]["name"]))
            for e in ct.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    refs.append(("Secret", vf["secretKeyRef"]["name"]))
                if "configMapKeyRef" in vf:
                    refs.append(("ConfigMap", vf["configMapKeyRef"]["name"]))
            mounts = {m["name"] for m in ct.get("volumeMounts") or []}
            claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates") or []}
            missing = mounts - {v["name"] for v in spec.get("volumes") or []} - claims
            problems += [f"{key(w)} mounts undefined volume {m}" for m in sorted(missing)]
        sa = spec.get("serviceAccountName")
        if sa:
            refs.append(("ServiceAccount", sa))
        for kind, name in refs:
            ref = f"{kind}/{name}"
            if ref not in names and ref not in external:
                problems.append(f"{key(w)} refers to {ref}, which is neither rendered nor declared external")
    for ref in sorted(external):
        if ref in names:
            problems.append(f"{ref} is declared external but is rendered (example values would ship)")
    c.check("every ConfigMap, Secret, volume and ServiceAccount reference resolves", problems)

    # --- pod security ----------------------------------------------------------------
    problems = []
    for w in workloads:
        spec = pod_spec(w)
        psc = spec.get("securityContext") or {}
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{key(w)} shares a host namespace")
        for ct in spec["containers"] + (spec.get("initContainers") or []):
            sc = ct.get("securityContext") or {}
            where = f"{key(w)} container {ct['name']}"
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                problems.append(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                problems.append(f"{where}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities are not all dropped")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: no RuntimeDefault seccomp profile")
            res = ct.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        problems.append(f"{where}: no {r} {kind[:-1]}")
            if ":" not in ct["image"].rsplit("/", 1)[-1] and "@" not in ct["image"]:
                problems.append(f"{where}: image {ct['image']} has no tag")
            if ct["image"].endswith(":latest"):
                problems.append(f"{where}: image {ct['image']} uses :latest")
    c.check("pods are restricted-PSS compliant, sized, and run tagged images", problems)

    # --- the Vitals services -----------------------------------------------------------
    dockerfile_bins = set(re.findall(r"--bin\s+(\S+)", open(args.dockerfile).read()))
    problems = []
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for svc, (grpc_service, _) in SERVICES.items():
        name = f"vitals-{svc}"
        d = deployments.get(name)
        if d is None:
            problems.append(f"Deployment/{name} is missing")
            continue
        spec = pod_spec(d)
        ct = spec["containers"][0]
        where = f"Deployment/{name}"
        binary = (ct.get("command") or [""])[0].rsplit("/", 1)[-1]
        if binary != name:
            problems.append(f"{where} runs {ct.get('command')}, not its own binary {name}")
        if binary not in dockerfile_bins:
            problems.append(f"{where} runs {binary}, which the Dockerfile does not build")
        if config_value(docs, ct, "VITALS_LISTEN") != f"0.0.0.0:{GRPC_PORT}":
            problems.append(f"{where}: VITALS_LISTEN is not 0.0.0.0:{GRPC_PORT}")
        ports = {p.get("name"): p["containerPort"] for p in ct.get("ports") or []}
        if ports.get("grpc") != GRPC_PORT:
            problems.append(f"{where}: no container port {GRPC_PORT} named grpc")
        tls = "VITALS_TLS_CERT" in env_of(ct)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = ct.get(probe)
            if p is None:
                if probe != "startupProbe":
                    problems.append(f"{where}: no {probe}")
                continue
            if tls:
                # The kubelet's gRPC probe cannot speak TLS: TCP is the fallback.
                if (p.get("tcpSocket") or {}).get("port") not in ("grpc", GRPC_PORT):
                    problems.append(f"{where}: TLS is on but {probe} is not a TCP probe of the gRPC port")
            elif (p.get("grpc") or {}).get("port") != GRPC_PORT:
                problems.append(f"{where}: {probe} is not a native gRPC probe on {GRPC_PORT}")
        if not tls:
            ready = (ct.get("readinessProbe") or {}).get("grpc") or {}
            if ready.get("service") != grpc_service:
                problems.append(f"{where}: readiness asks for {ready.get('service')!r}, not {grpc_service}")
        drain = config_value(docs, ct, "VITALS_DRAIN_TIMEOUT")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        pre_stop = (((ct.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        if drain is None or not drain.isdigit():
            problems.append(f"{where}: VITALS_DRAIN_TIMEOUT is not set to whole seconds")
        elif grace <= int(drain) + pre_stop:
            problems.append(f"{where}: grace {grace}s is not longer than preStop {pre_stop}s + drain {drain}s")
        tokens = config_value(docs, ct, "VITALS_TOKENS_FILE")
        if config_value(docs, ct, "VITALS_AUTH") != "on":
            problems.append(f"{where}: VITALS_AUTH is not on")
        if not tokens:
            problems.append(f"{where}: VITALS_TOKENS_FILE is not set")
        else:
            mount_dir, fname = tokens.rsplit("/", 1)
            vols = {v["name"]: v for v in spec.get("volumes") or []}
            ok = False
            for m in ct.get("volumeMounts") or []:
                v = vols.get(m["name"], {})
                items = [i["path"] for i in (v.get("secret") or {}).get("items") or []]
                if m["mountPath"] == mount_dir and fname in items:
                    ok = True
            if not ok:
                problems.append(f"{where}: no Secret volume puts {fname} at {tokens}")
        db = env_of(ct).get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if not db:
            problems.append(f"{where}: DATABASE_URL does not come from a Secret")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a Kubernetes API token it never uses")
    c.check("each service runs its binary on 0.0.0.0:50051 with gRPC probes, auth, a DB secret and a grace period longer than its drain", problems)

    # --- migration Job -----------------------------------------------------------------
    problems = []
    jobs = [d for d in docs if d["kind"] == "Job"]
    if not jobs:
        problems.append("no migration Job")
    for j in jobs:
        ct = pod_spec(j)["containers"][0]
        argv = [(ct.get("command") or [""])[0].rsplit("/", 1)[-1], *(ct.get("args") or [])]
        if argv != ["vitals", "migrate"]:
            problems.append(f"{key(j)} runs {argv}, not vitals migrate")
        if "vitals" not in dockerfile_bins:
            problems.append("the Dockerfile does not build vitals")
        if pod_spec(j).get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"{key(j)} has no Never/OnFailure restartPolicy")
    c.check("the migration Job runs `vitals migrate`", problems)

    # --- Services ----------------------------------------------------------------------
    problems = []
    for s in (d for d in docs if d["kind"] == "Service"):
        sel = s["spec"].get("selector") or {}
        targets = [w for w in workloads if w["kind"] != "Job" and matches({"matchLabels": sel}, pod_labels(w))]
        if len(targets) != 1:
            problems.append(f"{key(s)} selects {len(targets)} workloads, not 1")
            continue
        cports = {p.get("name"): p["containerPort"] for ct in pod_spec(targets[0])["containers"] for p in ct.get("ports") or []}
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if isinstance(tp, str) and tp not in cports:
                problems.append(f"{key(s)} port {p['name']} targets {tp!r}, which {key(targets[0])} does not name")
            if isinstance(tp, int) and tp not in cports.values():
                problems.append(f"{key(s)} port {p['name']} targets {tp}, which {key(targets[0])} does not open")
    c.check("every Service selects exactly one workload and targets a port it opens", problems)

    # --- PDB and HPA -------------------------------------------------------------------
    problems = []
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for svc in SERVICES:
        name = f"vitals-{svc}"
        covering = [p for p in pdbs if name in deployments and matches(p["spec"]["selector"], pod_labels(deployments[name]))]
        if len(covering) != 1:
            problems.append(f"Deployment/{name} is covered by {len(covering)} PodDisruptionBudgets, not 1")
    for p in pdbs:
        hit = [w for w in workloads if w["kind"] != "Job" and matches(p["spec"]["selector"], pod_labels(w))]
        if len(hit) != 1:
            problems.append(f"{key(p)} selects {len(hit)} workloads, not 1")
    c.check("one PodDisruptionBudget per service, each selecting one workload", problems)

    problems = []
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    for h in hpas:
        ref = h["spec"]["scaleTargetRef"]
        d = deployments.get(ref["name"])
        if ref["kind"] != "Deployment" or d is None:
            problems.append(f"{key(h)} scales {ref['kind']}/{ref['name']}, which is not rendered")
            continue
        if "replicas" in d["spec"]:
            problems.append(f"{key(h)}: {key(d)} also sets replicas, so every apply would fight the autoscaler")
        if h["spec"].get("minReplicas", 1) > h["spec"]["maxReplicas"]:
            problems.append(f"{key(h)}: minReplicas above maxReplicas")
        for ct in pod_spec(d)["containers"]:
            if "cpu" not in ((ct.get("resources") or {}).get("requests") or {}):
                problems.append(f"{key(h)}: {key(d)} has no CPU request to measure utilisation against")
        if ref["name"] == "vitals-learner":
            problems.append(f"{key(h)}: the learner is not meant to be autoscaled")
    for name in deployments:
        if name.startswith("vitals-") and "replicas" not in deployments[name]["spec"] and not any(
            h["spec"]["scaleTargetRef"]["name"] == name for h in hpas
        ):
            problems.append(f"Deployment/{name} has neither replicas nor an autoscaler")
    if args.min_replicas:
        for h in hpas:
            if h["spec"].get("minReplicas", 1) < args.min_replicas:
                problems.append(f"{key(h)}: minReplicas below {args.min_replicas}")
        for name, d in deployments.items():
            if name.startswith("vitals-") and d["spec"].get("replicas", args.min_replicas) < args.min_replicas:
                problems.append(f"Deployment/{name}: fewer than {args.min_replicas} replicas")
    c.check(f"autoscalers target CPU-requesting Deployments that leave replicas to them ({len(hpas)} HPAs)", problems)

    # --- NetworkPolicy: who can reach which service's gRPC port ------------------------
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    def allowed_sources(target: dict) -> tuple[bool, set[str]]:
        """(open to any source?, workloads allowed) on the gRPC port of `target`."""
        selecting = [p for p in policies if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                     and matches(p["spec"]["podSelector"], pod_labels(target))]
        if not selecting:
            return True, set()
        anyone, who = False, set()
        for p in selecting:
            for rule in p["spec"].get("ingress") or []:
                ports = rule.get("ports")
                if ports and not any(pt.get("port") in (GRPC_PORT, "grpc") for pt in ports):
                    continue
                peers = rule.get("from")
                if not peers:
                    anyone = True
                    continue
                for peer in peers:
                    if "ipBlock" in peer or "namespaceSelector" in peer:
                        anyone = True
                    elif "podSelector" in peer:
                        who |= {w["metadata"]["name"] for w in workloads if matches(peer["podSelector"], pod_labels(w))}
        return anyone, who

    problems = []
    for svc in SERVICES:
        d = deployments.get(f"vitals-{svc}")
        if d is None:
            continue
        anyone, who = allowed_sources(d)
        if svc == "learner":
            if anyone or who != {"vitals-scoring"}:
                problems.append(f"the learner is reachable by {'anyone' if anyone else sorted(who)}, not only by scoring")
        elif not anyone:
            problems.append(f"vitals-{svc} gRPC port is not open to clients")
        elif not any(matches(p["spec"]["podSelector"], pod_labels(d)) for p in policies):
            problems.append(f"vitals-{svc} is selected by no NetworkPolicy (every port open)")
    c.check("network policies: only scoring reaches the learner; the other services' gRPC port is open", problems)

    # --- scoring -> learner, and telemetry ------------------------------------------------
    problems = []
    scoring = deployments.get("vitals-scoring")
    if scoring:
        ct = pod_spec(scoring)["containers"][0]
        url = config_value(docs, ct, "VITALS_LEARNER_URL")
        if not url:
            problems.append("scoring has no VITALS_LEARNER_URL")
        else:
            s, port = service_for_url(docs, url, namespace)
            tls = "VITALS_TLS_CERT" in env_of(ct)
            if s is None or not matches({"matchLabels": s["spec"]["selector"]}, {"app.kubernetes.io/name": "vitals-learner"}):
                problems.append(f"VITALS_LEARNER_URL {url} does not name the learner's Service")
            elif port not in [p["port"] for p in s["spec"]["ports"]]:
                problems.append(f"VITALS_LEARNER_URL {url} uses a port the Service does not expose")
            if urlparse(url).scheme != ("https" if tls else "http"):
                problems.append(f"VITALS_LEARNER_URL {url}: scheme does not match TLS {'on' if tls else 'off'}")
        for other in ("ingestion", "profiles", "learner"):
            d = deployments.get(f"vitals-{other}")
            if d and config_value(docs, pod_spec(d)["containers"][0], "VITALS_LEARNER_URL"):
                problems.append(f"vitals-{other} gets VITALS_LEARNER_URL, which only scoring reads")
    for name, d in deployments.items():
        if not name.startswith("vitals-"):
            continue
        ep = config_value(docs, pod_spec(d)["containers"][0], "OTEL_EXPORTER_OTLP_ENDPOINT")
        if ep and args.in_cluster_collector:
            s, port = service_for_url(docs, ep, namespace)
            if s is None or port not in [p["port"] for p in s["spec"]["ports"]]:
                problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT {ep} is not a rendered Service port")
        if ep and not urlparse(ep).scheme.startswith("http"):
            problems.append(f"{name}: OTEL_EXPORTER_OTLP_ENDPOINT {ep} is not an http(s) URL")
    c.check("scoring reaches the learner's Service; OTLP endpoints are well-formed (and rendered, where in-cluster)", problems)

    # --- collector configuration ---------------------------------------------------------
    if args.collector_config:
        problems = []
        standalone = open(args.collector_config).read()
        cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("otel-collector-config")]
        if len(cms) != 1:
            problems.append(f"{len(cms)} collector ConfigMaps rendered, not 1")
        else:
            rendered = next(iter(cms[0]["data"].values()))
            if rendered != standalone:
                problems.append(f"the collector ConfigMap differs from {args.collector_config}")
        cfg = yaml.safe_load(standalone)
        svc = cfg.get("service") or {}
        for ext in svc.get("extensions") or []:
            if ext not in (cfg.get("extensions") or {}):
                problems.append(f"extension {ext} is enabled but not configured")
        if not svc.get("pipelines"):
            problems.append("no pipelines")
        for pname, p in (svc.get("pipelines") or {}).items():
            for section in ("receivers", "processors", "exporters"):
                for comp in p.get(section) or []:
                    if comp not in (cfg.get(section) or {}):
                        problems.append(f"pipeline {pname} uses {section[:-1]} {comp}, which is not configured")
            if not p.get("receivers") or not p.get("exporters"):
                problems.append(f"pipeline {pname} lacks receivers or exporters")
            if (p.get("processors") or ["memory_limiter"])[0] != "memory_limiter":
                problems.append(f"pipeline {pname} does not start with memory_limiter")
        grpc_ep = (((cfg.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("grpc", {}) or {}
        if not str(grpc_ep.get("endpoint", "")).endswith(":4317"):
            problems.append("the OTLP receiver does not listen for gRPC on 4317")
        c.check("the collector config is the standalone one and its pipelines are complete", problems)

    # --- pinned images -------------------------------------------------------------------
    if args.pinned:
        problems = []
        for w in workloads:
            for ct in pod_spec(w)["containers"]:
                image = ct["image"]
                tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
                if "@sha256:" not in image and not re.fullmatch(r"v?\d+\.\d+\.\d+", tag):
                    problems.append(f"{key(w)} runs {image}: not a release tag or digest")
                version = w["metadata"].get("labels", {}).get("app.kubernetes.io/version")
                if version and tag and tag.lstrip("v") != version.lstrip("v"):
                    problems.append(f"{key(w)}: version label {version} but image tag {tag}")
        c.check("images are pinned to a release tag or digest", problems)

    print(f"  [{args.name}] {c.passed} of {c.passed + c.failed} checks ok")
    return 1 if c.failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rendered", help="the output of kubectl kustomize")
    ap.add_argument("--name", required=True, help="label for the output (the overlay)")
    ap.add_argument("--dockerfile", required=True, help="deploy/docker/Dockerfile")
    ap.add_argument("--external", action="append", metavar="KIND/NAME",
                    help="an object created outside these manifests (may be referenced, must not be rendered)")
    ap.add_argument("--pinned", action="store_true", help="require release tags or digests")
    ap.add_argument("--min-replicas", type=int, default=0, help="least replicas per service (HPA min or replicas)")
    ap.add_argument("--in-cluster-collector", action="store_true",
                    help="the OTLP endpoint must be a rendered Service")
    ap.add_argument("--collector-config", help="deploy/otel/collector.yaml, compared with the rendered ConfigMap")
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
