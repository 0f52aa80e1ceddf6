#!/usr/bin/python3
"""Checks the Kubernetes manifests of deploy/k8s (CTest: deploy_k8s_manifests).

usage: check_manifests.py [--dir deploy/k8s] [--server tinybert-server] [--require-schema]

Parses every *.yaml under --dir (Debian's python3-yaml) and checks, per kind:
  all          apiVersion, kind, metadata.name; the apiVersion this repository means for the kind;
               no duplicate kind/namespace/name (optional/ may replace a base object); namespaced
               objects of the base set in a Namespace that the base set creates
  Deployment   selector.matchLabels within the pod template's labels; every container (and init
               container) has a name, an image with a tag (not :latest), resources.requests
               cpu + memory and limits.memory; serving containers have ports, readiness and
               liveness probes whose ports exist; volume mounts name volumes; env
               resourceFieldRefs name a container; prometheus.io/port is a container port;
               the tinybert-server container: --port is its http port, every --option is one that
               `tinybert-server --help` lists (with --server), terminationGracePeriodSeconds
               covers the preStop sleep + --request-timeout-ms + 5 s of keep-alive
  Service      selector selects exactly one Deployment; targetPorts exist in its containers
  HPA          scaleTargetRef names a Deployment of this set; minReplicas <= maxReplicas;
               a CPU utilization target needs CPU requests
  PDB          selector selects a Deployment
  Ingress      backends name a Service and one of its ports
  ServiceMonitor  selects a Service; endpoint ports are named ports of it
  Kustomization   its resources exist and are every base manifest
Then, when tests/scaleout/node_modules holds kubernetes-models (npm ci there) and node exists,
the Kubernetes JSON schemas in strict mode (k8s_schema.mjs); --require-schema fails without
them. Exits 0 when all pass, 1 otherwise, 4 (CTest: skipped) without python3-yaml.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

try:
    import yaml
except ImportError:
    print("!" * 78 + "\nSKIPPED: no python3-yaml for " + sys.executable +
          " (Debian: apt-get install -y python3-yaml)\n" + "!" * 78)
    sys.exit(4)

API_VERSIONS = {
    "Namespace": "v1", "Service": "v1", "ConfigMap": "v1",
    "Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1", "Ingress": "networking.k8s.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
}
CLUSTER_SCOPED = {"Namespace"}
# Containers that serve traffic need ports and probes; a Deployment's init containers do not.
KEEPALIVE_S = 5  # cpp-httplib closes an idle keep-alive connection after 5 s


class Checker:
    def __init__(self, root):
        self.root = root
        self.errors = []
        self.docs = []  # (where, set, doc)

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    def load(self):
        files = sorted(glob.glob(os.path.join(self.root, "**", "*.yaml"), recursive=True))
        for path in files:
            rel = os.path.relpath(path, self.root)
            group = "optional" if rel.split(os.sep)[0] == "optional" else "base"
            with open(path, encoding="utf-8") as f:
                try:
                    docs = [d for d in yaml.safe_load_all(f) if d is not None]
                except yaml.YAMLError as e:
                    self.error(rel, f"not YAML: {e}")
                    continue
            for i, doc in enumerate(docs):
                where = f"{rel}#{i}" if len(docs) > 1 else rel
                if not isinstance(doc, dict):
                    self.error(where, "not a mapping")
                    continue
                self.docs.append((where, group, doc))
        return files

    def of_kind(self, kind, groups=("base", "optional")):
        return [(w, d) for w, g, d in self.docs if d.get("kind") == kind and g in groups]

    # --- generic --------------------------------------------------------------------------
    def check_common(self):
        seen = {}
        base_namespaces = {d["metadata"]["name"] for w, g, d in self.docs
                           if d.get("kind") == "Namespace" and g == "base"
                           and isinstance(d.get("metadata"), dict)}
        for where, group, doc in self.docs:
            kind, api = doc.get("kind"), doc.get("apiVersion")
            if not kind or not api:
                self.error(where, "needs apiVersion and kind")
                continue
            if kind in API_VERSIONS and api != API_VERSIONS[kind]:
                self.error(where, f"{kind} should be apiVersion {API_VERSIONS[kind]}, not {api}")
            elif kind not in API_VERSIONS:
                self.error(where, f"unexpected kind {kind} (add it to API_VERSIONS and its checks)")
            if kind == "Kustomization":
                continue
            meta = doc.get("metadata")
            if not isinstance(meta, dict) or not meta.get("name"):
                self.error(where, "needs metadata.name")
                continue
            name = meta["name"]
            if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
                self.error(where, f"metadata.name {name!r} is not a DNS label")
            ns = meta.get("namespace")
            if kind not in CLUSTER_SCOPED:
                if not ns:
                    self.error(where, f"{kind} {name}: no metadata.namespace")
                elif group == "base" and ns not in base_namespaces:
                    self.error(where, f"namespace {ns!r} is not created by the base manifests")
            key = (group, kind, ns, name)
            if key in seen:
                self.error(where, f"{kind} {ns}/{name} also in {seen[key]}")
            seen[key] = where

    # --- Deployment -----------------------------------------------------------------------
    @staticmethod
    def port_names(containers):
        names, numbers = set(), set()
        for c in containers:
            for p in c.get("ports") or []:
                if "name" in p:
                    names.add(p["name"])
                numbers.add(p.get("containerPort"))
        return names, numbers

    def check_probe_port(self, where, probe_name, probe, names, numbers):
        for action in ("httpGet", "tcpSocket", "grpc"):
            if action in probe:
                port = probe[action].get("port")
                if isinstance(port, str) and port not in names:
                    self.error(where, f"{probe_name} uses port {port!r}, not a named port")
                if isinstance(port, int) and port not in numbers:
                    self.error(where, f"{probe_name} uses port {port}, not a container port")
                return
        if "exec" not in probe:
            self.error(where, f"{probe_name} has no httpGet/tcpSocket/grpc/exec action")

    def check_container(self, where, c, volumes, container_names, serving):
        name = c.get("name")
        w = f"{where} container {name}"
        if not name:
            self.error(where, "a container without a name")
        image = c.get("image", "")
        if not image:
            self.error(w, "no image")
        elif ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
            self.error(w, f"image {image!r} needs a pinned tag")
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for r in ("cpu", "memory"):
            if r not in req:
                self.error(w, f"no resources.requests.{r}")
        if "memory" not in lim:
            self.error(w, "no resources.limits.memory")
        names, numbers = self.port_names([c])
        if serving:
            if not c.get("ports"):
                self.error(w, "no ports")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    self.error(w, f"no {probe}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in c:
                self.check_probe_port(w, probe, c[probe], names, numbers)
        for p in c.get("ports") or []:
            if len(p.get("name", "")) > 15:
                self.error(w, f"port name {p['name']!r} is over 15 characters")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                self.error(w, f"volumeMount {m.get('name')!r} names no volume")
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("resourceFieldRef")
            if ref and ref.get("containerName", name) not in container_names:
                self.error(w, f"env {e.get('name')}: resourceFieldRef names no container")
            if ref and ref.get("resource", "").split(".")[0] == "requests":
                if ref["resource"].split(".", 1)[1] not in req:
                    self.error(w, f"env {e.get('name')}: {ref['resource']} is not set")

    def check_server(self, where, c, spec, help_text):
        """The tinybert-server container: options, port, drain time."""
        args = (c.get("command") or []) + (c.get("args") or [])
        w = f"{where} container {c.get('name')}"
        options = {a: (args[i + 1] if i + 1 < len(args) else None)
                   for i, a in enumerate(args) if a.startswith("--")}
        for a in options:
            if "=" in a:
                self.error(w, f"{a}: tinybert-server takes an option and its value as two items")
            elif help_text is not None and not re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])",
                                                         help_text):
                self.error(w, f"{a} is not an option of tinybert-server --help")
        port = options.get("--port")
        names = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        if port is None or names.get("http") != int(port):
            self.error(w, f"--port {port} is not the container port named http {names.get('http')}")
        timeout_s = int(options.get("--request-timeout-ms") or 30000) / 1000
        pre = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
        sleep_s = float(pre[1]) if pre and pre[0] == "sleep" and len(pre) == 2 else 0.0
        grace = spec.get("terminationGracePeriodSeconds", 30)
        need = sleep_s + timeout_s + KEEPALIVE_S
        if grace < need:
            self.error(w, f"terminationGracePeriodSeconds {grace} < preStop {sleep_s:g} s + "
                          f"request timeout {timeout_s:g} s + keep-alive {KEEPALIVE_S} s")
        live = c.get("livenessProbe") or {}
        live_window = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        if live and live_window <= timeout_s + KEEPALIVE_S:
            self.error(w, f"livenessProbe gives up after {live_window} s, within a drain "
                          f"({timeout_s + KEEPALIVE_S:g} s): a draining replica would be killed")

    def check_deployments(self, help_text):
        for where, d in self.of_kind("Deployment"):
            spec = d.get("spec") or {}
            sel = ((spec.get("selector") or {}).get("matchLabels")) or {}
            tmpl = spec.get("template") or {}
            labels = ((tmpl.get("metadata") or {}).get("labels")) or {}
            if not sel:
                self.error(where, "no spec.selector.matchLabels")
            for k, v in sel.items():
                if labels.get(k) != v:
                    self.error(where, f"selector {k}={v} is not a pod template label")
            pod = tmpl.get("spec") or {}
            containers = pod.get("containers") or []
            inits = pod.get("initContainers") or []
            if not containers:
                self.error(where, "no containers")
            volumes = {v.get("name") for v in pod.get("volumes") or []}
            names = {c.get("name") for c in containers + inits}
            for c in containers:
                self.check_container(where, c, volumes, names, serving=True)
            for c in inits:
                self.check_container(where, c, volumes, names, serving=False)
            ann = ((tmpl.get("metadata") or {}).get("annotations")) or {}
            if ann.get("prometheus.io/scrape") == "true":
                _, numbers = self.port_names(containers)
                if int(ann.get("prometheus.io/port", -1)) not in numbers:
                    self.error(where, f"prometheus.io/port {ann.get('prometheus.io/port')} "
                                      "is no container port")
            for c in containers:
                command = (c.get("command") or [""])[0]
                if os.path.basename(command) == "tinybert-server":
                    self.check_server(where, c, pod, help_text)

    def deployments_selected(self, selector, namespace):
        out = []
        for where, d in self.of_kind("Deployment"):
            if d["metadata"].get("namespace") != namespace:
                continue
            labels = ((d["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                out.append(d)
        return out

    # --- the others -----------------------------------------------------------------------
    def check_services(self):
        for where, s in self.of_kind("Service"):
            spec = s.get("spec") or {}
            sel = spec.get("selector") or {}
            picked = self.deployments_selected(sel, s["metadata"].get("namespace"))
            if len(picked) != 1:
                self.error(where, f"selector {sel} selects {len(picked)} Deployments, not 1")
                continue
            containers = picked[0]["spec"]["template"]["spec"].get("containers") or []
            names, numbers = self.port_names(containers)
            if not spec.get("ports"):
                self.error(where, "no ports")
            for p in spec.get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                if (isinstance(target, str) and target not in names) or \
                        (isinstance(target, int) and target not in numbers):
                    self.error(where, f"targetPort {target!r} is not a port of "
                                      f"Deployment {picked[0]['metadata']['name']}")

    def check_hpas(self):
        for where, h in self.of_kind("HorizontalPodAutoscaler"):
            spec = h.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            target = [d for _, d in self.of_kind("Deployment")
                      if d["metadata"]["name"] == ref.get("name")
                      and d["metadata"].get("namespace") == h["metadata"].get("namespace")]
            if ref.get("kind") != "Deployment" or ref.get("apiVersion") != "apps/v1" or not target:
                self.error(where, f"scaleTargetRef {ref} names no Deployment of these manifests")
                continue
            if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
                self.error(where, "minReplicas > maxReplicas")
            if not spec.get("metrics"):
                self.error(where, "no metrics")
            for m in spec.get("metrics") or []:
                if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu":
                    for c in target[0]["spec"]["template"]["spec"]["containers"]:
                        if "cpu" not in ((c.get("resources") or {}).get("requests") or {}):
                            self.error(where, f"CPU target, but container {c.get('name')} has "
                                              "no CPU request")

    def check_pdbs(self):
        for where, p in self.of_kind("PodDisruptionBudget"):
            sel = ((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not self.deployments_selected(sel, p["metadata"].get("namespace")):
                self.error(where, f"selector {sel} selects no Deployment")

    def services(self, namespace):
        return {s["metadata"]["name"]: s for _, s in self.of_kind("Service")
                if s["metadata"].get("namespace") == namespace}

    def check_ingresses(self):
        for where, i in self.of_kind("Ingress"):
            services = self.services(i["metadata"].get("namespace"))
            for rule in (i.get("spec") or {}).get("rules") or []:
                for path in ((rule.get("http") or {}).get("paths")) or []:
                    svc = ((path.get("backend") or {}).get("service")) or {}
                    s = services.get(svc.get("name"))
                    if s is None:
                        self.error(where, f"backend Service {svc.get('name')!r} does not exist")
                        continue
                    port = svc.get("port") or {}
                    ports = s["spec"].get("ports") or []
                    if not any(port.get("name") == p.get("name") if "name" in port
                               else port.get("number") == p.get("port") for p in ports):
                        self.error(where, f"backend port {port} is not a port of "
                                          f"{s['metadata']['name']}")

    def check_servicemonitors(self):
        for where, m in self.of_kind("ServiceMonitor"):
            spec = m.get("spec") or {}
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            picked = [s for s in self.services(m["metadata"].get("namespace")).values()
                      if sel and all((s["metadata"].get("labels") or {}).get(k) == v
                                     for k, v in sel.items())]
            if not picked:
                self.error(where, f"selector {sel} selects no Service")
                continue
            names = {p.get("name") for s in picked for p in s["spec"].get("ports") or []}
            for e in spec.get("endpoints") or []:
                if e.get("port") not in names:
                    self.error(where, f"endpoint port {e.get('port')!r} is not a Service port name")

    def check_kustomizations(self):
        for where, k in self.of_kind("Kustomization"):
            base_dir = os.path.join(self.root, os.path.dirname(where.split("#")[0]))
            listed = set(k.get("resources") or [])
            for r in listed:
                if not os.path.exists(os.path.join(base_dir, r)):
                    self.error(where, f"resource {r} does not exist")
            top = {os.path.basename(p) for p in glob.glob(os.path.join(base_dir, "*.yaml"))}
            for f in sorted(top - listed - {"kustomization.yaml"}):
                self.error(where, f"{f} is not in resources")
            images = {c.get("image", "").split(":")[0]
                      for _, d in self.of_kind("Deployment", ("base",))
                      for c in d["spec"]["template"]["spec"].get("containers", [])
                      + d["spec"]["template"]["spec"].get("initContainers", [])}
            for img in k.get("images") or []:
                if img.get("name") not in images:
                    self.error(where, f"images: {img.get('name')!r} is no container's image")

    def schema(self, require):
        node = shutil.which("node")
        have = os.path.isdir(os.path.join(HERE, "node_modules", "kubernetes-models"))
        if not node or not have:
            why = ("no node" if not node else
                   "no tests/scaleout/node_modules (cd tests/scaleout && npm ci)")
            message = f"Kubernetes schema check not run: {why}"
            if require:
                self.error("schema", message)
            else:
                print("NOTE: " + message)
            return
        docs = [{"where": w, "doc": d} for w, g, d in self.docs if d.get("kind") != "Kustomization"]
        out = subprocess.run([node, os.path.join(HERE, "k8s_schema.mjs")], input=json.dumps(docs),
                             capture_output=True, text=True)
        print(out.stdout.rstrip())
        if out.returncode != 0:
            self.error("schema", f"k8s_schema.mjs failed (exit {out.returncode}) "
                                 f"{out.stderr[-2000:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.path.join(REPO, "deploy", "k8s"))
    p.add_argument("--server", help="tinybert-server binary: check the options against --help")
    p.add_argument("--require-schema", action="store_true")
    args = p.parse_args()
    c = Checker(args.dir)
    files = c.load()
    if not files:
        print(f"no manifests under {args.dir}")
        return 1
    help_text = None
    if args.server:
        help_text = subprocess.run([args.server, "--help"], capture_output=True, text=True).stdout
    c.check_common()
    c.check_deployments(help_text)
    c.check_services()
    c.check_hpas()
    c.check_pdbs()
    c.check_ingresses()
    c.check_servicemonitors()
    c.check_kustomizations()
    c.schema(args.require_schema)
    kinds = {}
    for _, _, d in c.docs:
        kinds[d.get("kind")] = kinds.get(d.get("kind"), 0) + 1
    print(f"check_manifests: {len(files)} files, {len(c.docs)} documents "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    if c.errors:
        print("FAILED:\n  " + "\n  ".join(c.errors))
        return 1
    print("check_manifests: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
