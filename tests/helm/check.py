#!/usr/bin/env python3
"""Checks the Helm chart deploy/helm/tau-portal without a cluster.

    python tests/helm/check.py [CHART_DIR]      (default: deploy/helm/tau-portal)

Needs helm-python-sdk (the Helm Go SDK in a wheel: lint, schema validation, rendering) and
kubernetes-validate (the Kubernetes OpenAPI schemas, offline); scripts/test.sh installs both into
a venv and runs this through tests/api/helm.rs. Steps:

1. lint the chart with sample values (strict: warnings fail too);
2. prove the schema refuses missing or malformed required values;
3. render it for sample customers, write the manifests to a temporary file and run
   `kubernetes-validate --strict` on it against the oldest and newest Kubernetes the chart
   supports;
4. assert what the deployment must get right: the Grafana gate (auth-url to the portal's
   /api/auth/check, every identity header copied), the portal's hardening, probes and
   configuration (exactly keys the binary reads, secrets only by reference), TimescaleDB pinned
   to the compose file's image, Grafana configured like docker-compose.prod.yml and provisioned
   from the same files as grafana/, Grafana's data source logging in as the read-only role the
   portal creates (never the portal's own user, whose password never reaches Grafana's pod),
   every generated password kept on upgrade, the metrics listener (its own ClusterIP Service, never
   routed by an Ingress), what the NetworkPolicy admits port by port, the ResourceQuota.

Exits 1 on the first failed check with what was expected and what was found; prints
`helm chart: N checks passed` at the end.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import helm_python as helm
    import yaml
except ImportError as exc:  # pragma: no cover - environment problem, not a chart problem
    sys.exit(f"helm chart: {exc}; install helm-python-sdk and kubernetes-validate (scripts/test.sh does)")

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "customer-abc0001"
RELEASE = "customer-abc0001"
HOST = "abc0001.portal.example.com"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known to
# kubernetes-validate.
KUBE_VERSIONS = ["1.25.0", "1.37.0"]

# portal.metrics.port's default (the binary's own default too), and a Prometheus namespace.
METRICS_PORT = 9090
SCRAPE_NAMESPACE = "monitoring"
INGRESS_NAMESPACE = "ingress-nginx"
# Grafana's read-only database role (grafana.databaseUser's default) and the portal's own user.
READER = "grafana_reader"
DB_USER = "power_user"
# The passwords the chart generates (and keeps on upgrade) when none is given.
GENERATED = [
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "GRAFANA_DB_PASSWORD",
    "Authentication__DefaultAdminPassword",
]
# The Secret keys Grafana's pod may read: its database name, its admin password and its role's
# password. Never POSTGRES_USER/POSTGRES_PASSWORD, the portal's own login (a superuser).
GRAFANA_SECRET_KEYS = {"POSTGRES_DB", "GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD"}

SAMPLE: dict[str, Any] = {
    "customer": {"id": "abc0001", "companyName": "Acme Corp", "email": "admin@acme.example"},
    "domain": {"base": "portal.example.com"},
    "grafana": {"proxyWhitelist": "10.42.0.0/16"},
}


class CheckFailed(Exception):
    pass


class Checks:
    def __init__(self) -> None:
        self.passed = 0

    def that(self, condition: bool, message: str, found: Any = None) -> None:
        if not condition:
            detail = "" if found is None else f"\n  found: {found!r}"
            raise CheckFailed(f"{message}{detail}")
        self.passed += 1

    def equal(self, found: Any, expected: Any, what: str) -> None:
        self.that(found == expected, f"{what}: expected {expected!r}", found)


check = Checks()


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
class Rendered:
    """One render of the chart: its objects by kind and name, and the NOTES."""

    def __init__(self, chart: Any, values: dict[str, Any], *, upgrade: bool = False) -> None:
        self.values = values
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade)
        self.notes = ""
        self.docs: list[dict[str, Any]] = []
        self.text_parts: list[str] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            if not path.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.docs.append(doc)
                    self.text_parts.append(yaml.safe_dump(doc, sort_keys=False))

    @property
    def yaml_text(self) -> str:
        return "---\n".join(self.text_parts)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        check.that(len(found) == 1, f"exactly one {kind} named {name}", [d["metadata"]["name"] for d in self.all(kind)])
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return self.all("Deployment") + self.all("StatefulSet")

    def service_for(self, workload: dict[str, Any], port: int) -> dict[str, Any]:
        """The ClusterIP Service that selects the workload's pods and serves `port`."""
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for svc in self.all("Service"):
            spec = svc["spec"]
            if spec.get("clusterIP") == "None":
                continue
            selector = spec.get("selector") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                if any(p["port"] == port for p in spec["ports"]):
                    return svc
        raise CheckFailed(f"no Service selects the pods of {workload['metadata']['name']} on port {port}")


def name(component: str) -> str:
    return f"{RELEASE}-{component}"


def container(workload: dict[str, Any], cname: str) -> dict[str, Any]:
    containers = {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}
    check.that(cname in containers, f"{workload['metadata']['name']} has a container {cname}", list(containers))
    return containers[cname]


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = c.get("env") or []
    names = [e["name"] for e in entries]
    check.that(len(names) == len(set(names)), f"container {c['name']}: no env key twice", names)
    return {e["name"]: e for e in entries}


def secret_ref(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    """(Secret name, key) of an env entry read from a Secret; None for a literal value."""
    ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef")
    return None if ref is None else (ref.get("name"), ref.get("key"))


def secret_data(r: Rendered) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in r.one("Secret", name("secrets"))["data"].items()}


def pod_secret_use(workload: dict[str, Any]) -> tuple[set[str], list[Any]]:
    """The Secret keys a pod's containers (init containers too) read by secretKeyRef, and every
    other way it could see a Secret (envFrom, secret or projected volumes)."""
    spec = workload["spec"]["template"]["spec"]
    keys: set[str] = set()
    wholesale: list[Any] = []
    for c in spec.get("initContainers", []) + spec["containers"]:
        for e in c.get("env") or []:
            ref = secret_ref(e)
            if ref:
                keys.add(ref[1])
        wholesale += c.get("envFrom") or []
    wholesale += [v for v in spec.get("volumes") or [] if "secret" in v or "projected" in v]
    return keys, wholesale


def port_number(c: dict[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p.get("name") == port:
            return p["containerPort"]
    raise CheckFailed(f"container {c['name']} has no port named {port!r}")


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    s = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", s)
    if not m or (m.group(2) and m.group(2) not in units):
        raise CheckFailed(f"unreadable quantity {value!r}")
    return float(m.group(1)) * units.get(m.group(2), 1)


def peer_admits(peer: dict[str, Any], namespace: str) -> bool:
    """Whether one NetworkPolicy `from` peer admits every pod of `namespace`. Only the peer shapes
    the chart renders are understood; any other fails the check instead of being guessed at."""
    if peer == {"podSelector": {}}:
        return namespace == NAMESPACE
    if set(peer) == {"ipBlock"}:
        # Addresses outside the cluster (devices); not a namespace's pods.
        return False
    if set(peer) == {"namespaceSelector"}:
        selector = peer["namespaceSelector"]
        if selector == {}:
            return True
        if set(selector) == {"matchLabels"} and set(selector["matchLabels"]) == {"kubernetes.io/metadata.name"}:
            return selector["matchLabels"]["kubernetes.io/metadata.name"] == namespace
    raise CheckFailed(f"check.py cannot evaluate the NetworkPolicy peer {peer!r} (extend peer_admits)")


def admits(r: Rendered, namespace: str, port: int) -> bool:
    """Whether the release's NetworkPolicies let pods of `namespace` reach TCP `port` of its pods:
    some ingress rule admits the source (no `from`: every source) and the port (no `ports`: all)."""
    for policy in r.all("NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            peers = rule.get("from")
            if peers and not any(peer_admits(peer, namespace) for peer in peers):
                continue
            ports = rule.get("ports")
            if not ports:
                return True
            for p in ports:
                if not isinstance(p.get("port"), int) or "endPort" in p:
                    raise CheckFailed(f"check.py cannot evaluate the NetworkPolicy port {p!r} (extend admits)")
                if p["port"] == port and p.get("protocol", "TCP") == "TCP":
                    return True
    return False


def backend_container_port(r: Rendered, service: str, port_ref: dict[str, Any]) -> tuple[str, int]:
    """Where an Ingress backend (Service name + port name/number) lands: workload, container port."""
    svc = r.one("Service", service)
    key, wanted = ("name", port_ref["name"]) if "name" in port_ref else ("port", port_ref.get("number"))
    ports = [p for p in svc["spec"]["ports"] if p.get(key) == wanted]
    check.that(
        len(ports) == 1, f"Ingress backend {service} {port_ref} names one port of the Service", svc["spec"]["ports"]
    )
    selector = svc["spec"]["selector"]
    for w in r.workloads():
        if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items()):
            c = w["spec"]["template"]["spec"]["containers"][0]
            return w["metadata"]["name"], port_number(c, ports[0]["targetPort"])
    raise CheckFailed(f"Service {service} selects no workload")


# ---------------------------------------------------------------------------------------------
# What the rest of the repository says the chart must match
# ---------------------------------------------------------------------------------------------
def readme_env_keys() -> dict[str, bool]:
    """The keys the binary reads (README "Configuration"): key -> is a secret."""
    return {k: is_secret for k, (_, is_secret) in readme_env_table().items()}


def readme_env_table() -> dict[str, tuple[str, bool]]:
    """README "Configuration": key -> (the binary's default, is a secret)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- env-keys:start -->(.*?)<!-- env-keys:end -->", text, re.S)
    if not m:
        raise CheckFailed("README.md has no env-keys table")
    keys = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            keys[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].startswith("yes"))
    if len(keys) < 10:
        raise CheckFailed(f"README.md env-keys table: fewer than 10 keys read: {sorted(keys)}")
    return keys


def identity_headers() -> list[str]:
    src = (REPO / "src/auth/forward.rs").read_text()
    m = re.search(r"IDENTITY_HEADERS:\s*\[&str;\s*\d+\]\s*=\s*\[([^\]]*)\]", src)
    if not m:
        raise CheckFailed("src/auth/forward.rs: IDENTITY_HEADERS not found")
    return re.findall(r'"([^"]+)"', m.group(1))


def compose_services() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())["services"]


def compose_env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in compose_services()[service]["environment"].items()}


def compose_grafana_env() -> dict[str, str]:
    return compose_env("grafana")


def compose_variable(value: str, what: str) -> tuple[str, str | None]:
    """A compose value that is one `${VAR}`, `${VAR:-default}` or `${VAR:?message}`: (VAR, the
    default or None)."""
    m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}", value)
    if not m:
        raise CheckFailed(
            f"docker-compose.prod.yml {what} = {value!r}: expected one ${{VAR}}, ${{VAR:-default}} or ${{VAR:?message}}"
        )
    return m.group(1), m.group(3) if m.group(2) == "-" else None


def compose_timescaledb_image() -> str:
    """The compose file's TimescaleDB image: the default of `${TIMESCALEDB_IMAGE:-<image>}`."""
    image = str(compose_services()["timescaledb"]["image"])
    m = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]+)\}", image)
    if m:
        return m.group(1)
    if "$" in image:
        raise CheckFailed(f"docker-compose.prod.yml timescaledb image {image!r}: expected ${{VAR:-image}} or an image")
    return image


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------
def check_lint(chart_dir: Path) -> None:
    report = helm.lint(chart_dir, SAMPLE, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    check.that(
        not report["errors"] and not problems,
        "helm lint --strict with sample values is clean",
        problems or report["errors"],
    )
    report = helm.lint(chart_dir)
    check.that(bool(report["errors"]), "helm lint without the required values fails (the schema requires them)", report)


def check_schema_refusals(chart: Any) -> None:
    def refused(values: dict[str, Any], needle: str, why: str) -> None:
        try:
            chart.render(values, name=RELEASE, namespace=NAMESPACE)
        except helm.HelmValuesError as e:
            check.that(needle in str(e), f"schema refuses {why}, naming {needle!r}", str(e))
            return
        except helm.HelmError as e:
            raise CheckFailed(f"schema should refuse {why} (a values error), got {type(e).__name__}: {e}") from e
        raise CheckFailed(f"schema should refuse {why}, but the chart rendered")

    def without(section: str, key: str) -> dict[str, Any]:
        values = dict(SAMPLE)
        values[section] = {k: v for k, v in SAMPLE[section].items() if k != key}
        return values

    only = {k: v for k, v in SAMPLE.items() if k != "domain"}
    refused({}, "customer", "no values at all")
    refused(without("customer", "id"), "'id'", "a missing customer.id")
    refused(without("customer", "companyName"), "'companyName'", "a missing customer.companyName")
    refused(without("customer", "email"), "'email'", "a missing customer.email")
    refused(only, "'domain'", "a missing domain")
    refused(merged(SAMPLE, {"domain": {"base": ""}}), "/domain/base", "an empty domain.base")
    for bad_id in ["ABC0001", "-abc", "a", "abc_0001", "a" * 32, "abc.0001"]:
        refused(merged(SAMPLE, {"customer": {"id": bad_id}}), "/customer/id", f"customer.id {bad_id!r}")
    refused(merged(SAMPLE, {"customer": {"id": 1234}}), "/customer/id", "a numeric customer.id")
    refused(merged(SAMPLE, {"customer": {"email": "nobody"}}), "/customer/email", "an email without @")
    refused(
        merged(SAMPLE, {"whiteLabel": {"primaryColor": "blue"}}),
        "/whiteLabel/primaryColor",
        "a colour that is not #rrggbb",
    )
    refused(
        merged(SAMPLE, {"secrets": {"defaultAdminPassword": "short"}}),
        "/secrets/defaultAdminPassword",
        "an admin password under 12 characters",
    )
    refused(merged(SAMPLE, {"fleetIngest": {"enabled": True}}), "/fleetIngest/url", "fleetIngest.enabled without a url")
    refused(merged(SAMPLE, {"image": {"pullPolicy": "Sometimes"}}), "/image/pullPolicy", "an unknown pullPolicy")
    refused(merged(SAMPLE, {"customer": {"ID": "abc0001"}}), "ID", "a mistyped key")
    refused(
        merged(SAMPLE, {"grafana": {"proxyWhitelist": ""}}),
        "/grafana/proxyWhitelist",
        "an empty Grafana proxy whitelist",
    )
    for port, why in [(8080, "the portal's HTTP port"), (3000, "Grafana's HTTP port"), (443, "a privileged port")]:
        refused(
            merged(SAMPLE, {"portal": {"metrics": {"port": port}}}),
            "/portal/metrics/port",
            f"portal.metrics.port {port} ({why}: the ingress controller may reach it, or uid 1000 cannot bind it)",
        )
    refused(merged(SAMPLE, {"portal": {"metrics": {"path": "/m"}}}), "path", "an unknown portal.metrics key")
    refused(
        merged(SAMPLE, {"networkPolicy": {"metricsScrapeNamespaces": "monitoring"}}),
        "/networkPolicy/metricsScrapeNamespaces",
        "metricsScrapeNamespaces that is not a list",
    )
    refused(
        merged(SAMPLE, {"networkPolicy": {"metricsScrapeNamespaces": ["Monitoring"]}}),
        "/networkPolicy/metricsScrapeNamespaces",
        "a scrape namespace that is not a namespace name",
    )
    # Grafana's role: a plain PostgreSQL identifier (the portal's own rule), not a reserved role.
    for bad_role in ["Grafana", "1reader", "grafana-reader", "grafana reader", 'x"; drop', "a" * 64, ""]:
        refused(
            merged(SAMPLE, {"grafana": {"databaseUser": bad_role}}),
            "/grafana/databaseUser",
            f"grafana.databaseUser {bad_role!r} (not a lowercase identifier of at most 63 characters)",
        )
    for reserved in ["postgres", "public", "pg_monitor", "pg_read_all_data"]:
        refused(
            merged(SAMPLE, {"grafana": {"databaseUser": reserved}}),
            "/grafana/databaseUser",
            f"grafana.databaseUser {reserved!r} (a reserved role)",
        )
    refused(merged(SAMPLE, {"grafana": {"databaseUser": 7}}), "/grafana/databaseUser", "a numeric grafana.databaseUser")
    for fine in ["_reader", "dash_ro2", "a" * 63, "pgreader"]:
        try:
            chart.render(merged(SAMPLE, {"grafana": {"databaseUser": fine}}), name=RELEASE, namespace=NAMESPACE)
            error = None
        except helm.HelmError as e:
            error = f"{type(e).__name__}: {e}"
        check.that(error is None, f"the chart accepts grafana.databaseUser {fine!r} (a valid role name)", error)
    # The portal's own user as Grafana's: refused by the template (the schema cannot compare two values).
    for values, why in [
        ({"grafana": {"databaseUser": DB_USER}}, "grafana.databaseUser = database.user"),
        ({"database": {"user": "owner_x"}, "grafana": {"databaseUser": "owner_x"}}, "both set to one name"),
    ]:
        try:
            chart.render(merged(SAMPLE, values), name=RELEASE, namespace=NAMESPACE)
        except helm.HelmError as e:
            check.that(
                "grafana.databaseUser" in str(e) and "database.user" in str(e),
                f"the chart refuses {why}, naming both values",
                str(e),
            )
        else:
            raise CheckFailed(f"the chart should refuse {why} (Grafana would log in as the portal's own user)")


def check_kubernetes_validate(r: Rendered, label: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="tau-portal-rendered-", delete=False) as f:
        f.write(r.yaml_text)
        path = f.name
    try:
        for version in KUBE_VERSIONS:
            proc = subprocess.run(
                [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, path],
                capture_output=True,
                text=True,
                check=False,
            )
            output = (proc.stdout + proc.stderr).strip()
            problems = "\n".join(line for line in output.splitlines() if not line.startswith("INFO ")) or output
            check.that(
                proc.returncode == 0 and "ERROR" not in output,
                f"kubernetes-validate --strict -k {version} accepts the rendered manifests ({label})",
                problems,
            )
            validated = len(re.findall(r"^INFO .* passed for resource ", output, re.M))
            check.equal(
                validated,
                len(r.docs),
                f"kubernetes-validate -k {version} validated every object against a schema ({label})",
            )
    finally:
        Path(path).unlink(missing_ok=True)


def check_objects(r: Rendered) -> None:
    kinds = sorted({d["kind"] for d in r.docs})
    for kind in [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ResourceQuota",
        "Secret",
        "Service",
        "StatefulSet",
    ]:
        check.that(kind in kinds, f"the chart renders a {kind}", kinds)
    for d in r.docs:
        meta = d["metadata"]
        check.that(len(meta["name"]) <= 63, f"{d['kind']} {meta['name']}: name fits 63 characters")
        check.that(
            "namespace" not in meta, f"{d['kind']} {meta['name']}: no hard-coded namespace (one release per namespace)"
        )
        check.equal(
            meta["labels"].get("app.kubernetes.io/instance"), RELEASE, f"{d['kind']} {meta['name']}: instance label"
        )
    for w in r.workloads():
        spec = w["spec"]["template"]["spec"]
        check.equal(
            spec.get("automountServiceAccountToken"), False, f"{w['metadata']['name']}: no service account token"
        )
        check.equal(w["spec"]["replicas"], 1, f"{w['metadata']['name']}: one replica")
        for c in spec["containers"]:
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    check.that(
                        res in (c.get("resources") or {}).get(kind, {}),
                        f"{w['metadata']['name']}/{c['name']}: {kind}.{res} set (the ResourceQuota needs it)",
                    )
    # Every Service selects some workload's pods and targets a port its container has.
    for svc in r.all("Service"):
        selector = svc["spec"]["selector"]
        targets = [
            w
            for w in r.workloads()
            if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]
        check.that(
            len(targets) == 1,
            f"Service {svc['metadata']['name']} selects exactly one workload's pods",
            [t["metadata"]["name"] for t in targets],
        )
        c = targets[0]["spec"]["template"]["spec"]["containers"][0]
        for p in svc["spec"]["ports"]:
            target = port_number(c, p["targetPort"])
            check.that(target > 0, f"Service {svc['metadata']['name']} port {p['name']} targets a container port")


def check_secret(r: Rendered) -> dict[str, str]:
    secret = r.one("Secret", name("secrets"))
    data = secret_data(r)
    check.equal(set(data), {"POSTGRES_DB", "POSTGRES_USER", *GENERATED}, "Secret keys")
    check.equal(data["POSTGRES_DB"], "power_monitoring", "POSTGRES_DB (the runbook's database)")
    check.equal(data["POSTGRES_USER"], DB_USER, "POSTGRES_USER")
    for key in GENERATED:
        check.that(
            re.fullmatch(r"[A-Za-z0-9]{32}", data[key]) is not None,
            f"{key} generated: 32 random alphanumerics",
            data[key],
        )
    check.equal(len({data[key] for key in GENERATED}), len(GENERATED), "every generated password is a different one")
    check.equal(
        secret["metadata"].get("annotations", {}).get("helm.sh/resource-policy"),
        "keep",
        "Secret kept on helm uninstall (the database keeps its password)",
    )
    check.that("stringData" not in secret, "Secret values base64 in data, not stringData")
    return data


def check_secret_kept(chart_dir: Path) -> None:
    """Upgrades keep every generated password. Offline, `lookup` finds nothing (every render is a
    first install), so this renders a copy of the chart whose one lookup of the release's Secret
    answers with a Secret already in the cluster, and runs the template's real keep logic."""
    existing = {key: f"kept-{i}-{key}" for i, key in enumerate(GENERATED)}
    call = '(lookup "v1" "Secret" .Release.Namespace $name)'
    found = " ".join(f'"{k}" "{base64.b64encode(v.encode()).decode()}"' for k, v in existing.items())
    with tempfile.TemporaryDirectory(prefix="tau-portal-upgrade-") as tmp:
        copy = Path(tmp) / chart_dir.name
        shutil.copytree(chart_dir, copy)
        template = copy / "templates/secret.yaml"
        text = template.read_text()
        check.equal(text.count(call), 1, f"secret.yaml reads the release's Secret back once: {call}")
        template.write_text(text.replace(call, f'(dict "data" (dict {found}))'))
        with helm.Chart.load(copy) as upgraded:
            data = secret_data(Rendered(upgraded, SAMPLE, upgrade=True))
            for key, value in existing.items():
                check.equal(data.get(key), value, f"an upgrade keeps {key} from the release's Secret")
            given = {"grafanaDatabasePassword": "a-new-reader-password", "postgresPassword": "a-new-db-password"}
            data = secret_data(Rendered(upgraded, merged(SAMPLE, {"secrets": given}), upgrade=True))
            check.equal(
                data.get("GRAFANA_DB_PASSWORD"),
                "a-new-reader-password",
                "a given grafanaDatabasePassword wins over the kept one (rotation)",
            )
            check.equal(
                data.get("POSTGRES_PASSWORD"), "a-new-db-password", "a given postgresPassword wins over the kept one"
            )
            check.equal(
                data.get("GRAFANA_ADMIN_PASSWORD"),
                existing["GRAFANA_ADMIN_PASSWORD"],
                "the passwords not given stay kept",
            )


def check_no_inlined_secrets(r: Rendered, secret_values: dict[str, str]) -> None:
    others = "\n".join(t for d, t in zip(r.docs, r.text_parts) if d["kind"] != "Secret")
    for key, value in secret_values.items():
        if key.endswith(("_DB", "_USER")):
            continue
        check.that(value not in others, f"the value of {key} appears only in the Secret (referenced, not inlined)")


def check_portal(r: Rendered, secret_name: str, env_keys: dict[str, bool]) -> dict[str, Any]:
    dep = r.one("Deployment", name("portal"))
    check.equal(dep["spec"]["strategy"]["type"], "Recreate", "portal update strategy (ReadWriteOnce volumes)")
    pod = dep["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        check.equal(sc.get(key), 1000, f"portal pod securityContext.{key} (the image's user app)")
    check.equal(sc.get("runAsNonRoot"), True, "portal pod runAsNonRoot")
    c = container(dep, "portal")
    check.equal(c["image"], "tau-acuvim-portal:latest", "portal image (default)")
    csc = c["securityContext"]
    check.equal(csc.get("readOnlyRootFilesystem"), True, "portal readOnlyRootFilesystem")
    check.equal(csc.get("allowPrivilegeEscalation"), False, "portal allowPrivilegeEscalation")
    check.equal(csc.get("capabilities", {}).get("drop"), ["ALL"], "portal drops every capability")
    check.that(csc.get("privileged") in (None, False), "portal not privileged")
    check.equal(csc.get("runAsUser", sc.get("runAsUser")), 1000, "portal container runs as uid 1000")

    check.equal(c["livenessProbe"]["httpGet"]["path"], "/health", "portal liveness probe path")
    check.equal(c["readinessProbe"]["httpGet"]["path"], "/health/ready", "portal readiness probe path")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        check.equal(port_number(c, c[probe]["httpGet"]["port"]), 8080, f"portal {probe} port")
    startup = c["startupProbe"]
    check.that(
        startup["periodSeconds"] * startup["failureThreshold"] > 60,
        "the startup probe outlasts Database__StartupTimeoutSeconds (60 s) before liveness may restart the portal",
        startup,
    )

    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    pvcs = {p["metadata"]["name"] for p in r.all("PersistentVolumeClaim")}
    for path in ("/data/keys", "/data/branding"):
        check.that(path in mounts, f"portal mounts {path}", mounts)
        claim = volumes[mounts[path]].get("persistentVolumeClaim", {}).get("claimName")
        check.that(claim in pvcs, f"{path} is backed by a PVC of the chart", claim)
        pvc = r.one("PersistentVolumeClaim", claim)
        check.equal(
            pvc["metadata"].get("annotations", {}).get("helm.sh/resource-policy"),
            "keep",
            f"PVC {claim} kept on helm uninstall",
        )

    env = env_of(c)
    unknown = sorted(k for k in env if k not in env_keys)
    check.that(not unknown, "portal env holds only keys the binary reads (README Configuration)", unknown)
    values = {k: e.get("value") for k, e in env.items()}
    check.equal(values.get("Application__PublicUrl"), f"https://{HOST}", "Application__PublicUrl")
    check.equal(values.get("Application__Environment"), "Production", "Application__Environment")
    check.equal(values.get("Application__RunMode"), "Client", "Application__RunMode")
    check.equal(values.get("Application__DataDirectory"), "/data", "Application__DataDirectory (the volumes' parent)")
    check.equal(values.get("Grafana__EmbedPathPrefix"), "/grafana", "Grafana__EmbedPathPrefix")
    check.equal(
        values.get("Authentication__DefaultAdminEmail"), "admin@acme.example", "default admin email (customer.email)"
    )
    check.equal(values.get("WhiteLabel__ApplicationName"), "Acme Corp Power Monitoring", "default application name")
    check.equal(values.get("WhiteLabel__FooterText"), "© Acme Corp", "default footer text")
    check.equal(values.get("WhiteLabel__PrimaryColor"), "#0c4a6e", "default primary colour")
    db = r.one("StatefulSet", name("timescaledb"))
    db_svc = r.service_for(db, 5432)
    check.equal(values.get("POSTGRES_HOST"), db_svc["metadata"]["name"], "POSTGRES_HOST is the TimescaleDB Service")
    check.equal(values.get("POSTGRES_PORT"), "5432", "POSTGRES_PORT")
    for key, secret_key in {
        "POSTGRES_DB": "POSTGRES_DB",
        "POSTGRES_USER": "POSTGRES_USER",
        "POSTGRES_PASSWORD": "POSTGRES_PASSWORD",
        "Authentication__DefaultAdminPassword": "Authentication__DefaultAdminPassword",
        "Grafana__DatabasePassword": "GRAFANA_DB_PASSWORD",
    }.items():
        check.that(
            secret_ref(env.get(key)) is not None and "value" not in env[key],
            f"portal {key} comes from the Secret",
            env.get(key),
        )
        check.equal(secret_ref(env[key]), (secret_name, secret_key), f"portal {key} secretKeyRef")
    for key, is_secret in env_keys.items():
        if is_secret and key in env:
            check.that("value" not in env[key], f"portal secret key {key} is never a literal value")
    return dep


def check_database(r: Rendered, secret_name: str) -> None:
    sts = r.one("StatefulSet", name("timescaledb"))
    c = container(sts, "timescaledb")
    repository, _, tag = c["image"].rpartition(":")
    check.equal(repository, "timescale/timescaledb", "TimescaleDB image repository")
    check.that(
        re.fullmatch(r"2\.[0-9]+\.[0-9]+-pg16", tag) is not None,
        "TimescaleDB image pinned to a release (2.<minor>.<patch>-pg16), never a moving tag like latest-pg16",
        tag,
    )
    check.equal(
        c["image"],
        compose_timescaledb_image(),
        "TimescaleDB image = docker-compose.prod.yml's default (a dump restores only into the same version)",
    )
    probe = " ".join(c["readinessProbe"]["exec"]["command"])
    check.that("pg_isready" in probe, "TimescaleDB readiness probe runs pg_isready", probe)
    env = env_of(c)
    for key in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        ref = (env.get(key) or {}).get("valueFrom", {}).get("secretKeyRef", {})
        check.equal((ref.get("name"), ref.get("key")), (secret_name, key), f"TimescaleDB {key} from the Secret")
    claims = sts["spec"].get("volumeClaimTemplates") or []
    check.that(len(claims) == 1, "TimescaleDB has a volumeClaimTemplate", claims)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    check.equal(mounts.get(claims[0]["metadata"]["name"]), "/var/lib/postgresql/data", "TimescaleDB data volume mount")
    pgdata = env.get("PGDATA", {}).get("value", "")
    check.that(
        pgdata.startswith("/var/lib/postgresql/data/"), "PGDATA is a subfolder of the volume (lost+found)", pgdata
    )
    headless = r.one("Service", sts["spec"]["serviceName"])
    check.equal(headless["spec"].get("clusterIP"), "None", "the StatefulSet's governing Service is headless")


def check_grafana(r: Rendered, secret_name: str, chart_dir: Path) -> dict[str, Any]:
    dep = r.one("Deployment", name("grafana"))
    c = container(dep, "grafana")
    check.equal(c["image"], "grafana/grafana:11.4.0", "Grafana image (as in docker-compose.prod.yml)")
    env = env_of(c)
    compose = compose_grafana_env()
    expected_dynamic = {
        "GF_SERVER_ROOT_URL": f"https://{HOST}/grafana/",
        "GF_AUTH_PROXY_WHITELIST": "10.42.0.0/16",
    }
    for key, value in compose.items():
        if not key.startswith("GF_"):
            continue
        check.that(key in env, f"Grafana sets {key} like the compose file", sorted(env))
        if key == "GF_SECURITY_ADMIN_PASSWORD":
            ref = env[key].get("valueFrom", {}).get("secretKeyRef", {})
            check.equal(
                (ref.get("name"), ref.get("key")),
                (secret_name, "GRAFANA_ADMIN_PASSWORD"),
                "Grafana admin password from the Secret",
            )
        elif key in expected_dynamic:
            check.equal(env[key].get("value"), expected_dynamic[key], f"Grafana {key}")
        else:
            check.that("${" not in value, f"compose's {key} is a constant the chart can copy", value)
            check.equal(env[key].get("value"), value, f"Grafana {key} (as in the compose file)")
    check.equal(env["GF_AUTH_PROXY_HEADER_NAME"]["value"], "X-WEBAUTH-USER", "Grafana auth.proxy header")
    for flag in ("GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_BASIC_ENABLED"):
        check.equal(env[flag]["value"], "false", f"Grafana {flag}")
    check.equal(env["GF_AUTH_DISABLE_LOGIN_FORM"]["value"], "true", "Grafana login form off")
    check.equal(env["GF_SERVER_SERVE_FROM_SUB_PATH"]["value"], "true", "Grafana serves from /grafana")
    check.equal(env["GF_SECURITY_ALLOW_EMBEDDING"]["value"], "true", "Grafana allows embedding")
    # The data source's login, as the compose file gives it: each `${VAR}` (a secret .env must
    # give) there is the Secret's key VAR here (the Secret's keys are named like .env's
    # variables), each `${VAR:-default}` the default as a literal value.
    source_keys = {k for k in env if not k.startswith("GF_")} - {"POSTGRES_HOST", "POSTGRES_PORT"}
    check.equal(
        source_keys,
        {k for k in compose if not k.startswith("GF_")},
        "Grafana's data source variables = the compose file's (apart from the host/port of the Service)",
    )
    for key in sorted(source_keys):
        var, default = compose_variable(compose[key], f"grafana {key}")
        if default is None:
            check.equal(
                secret_ref(env[key]),
                (secret_name, var),
                f"Grafana {key} from the Secret's {var}, like compose's ${{{var}}}",
            )
        else:
            check.equal(env[key], {"name": key, "value": default}, f"Grafana {key}: compose's default of ${{{var}}}")
    db_svc = r.service_for(r.one("StatefulSet", name("timescaledb")), 5432)
    check.equal(
        env.get("POSTGRES_HOST", {}).get("value"),
        db_svc["metadata"]["name"],
        "Grafana's data source host is the TimescaleDB Service",
    )

    sc = dep["spec"]["template"]["spec"]["securityContext"]
    check.equal(sc.get("runAsNonRoot"), True, "Grafana runs as non-root")
    check.equal(c["securityContext"].get("allowPrivilegeEscalation"), False, "Grafana allowPrivilegeEscalation")

    # Provisioning: the ConfigMap holds every file of the chart's files/grafana/provisioning,
    # mounted back at the same relative paths under /etc/grafana/provisioning.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    check.that("/etc/grafana/provisioning" in mounts, "Grafana mounts its provisioning", mounts)
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    cm_volume = volumes[mounts["/etc/grafana/provisioning"]]["configMap"]
    cm = r.one("ConfigMap", cm_volume["name"])
    items = {i["path"]: i["key"] for i in cm_volume.get("items", [])}
    prov_dir = chart_dir / "files/grafana/provisioning"
    files = sorted(p.relative_to(prov_dir).as_posix() for p in prov_dir.rglob("*") if p.is_file())
    check.that("datasources/timescaledb.yml" in files, "the chart ships the TimescaleDB data source", files)
    check.equal(sorted(items), files, "provisioning ConfigMap items = the chart's provisioning files")
    for rel, key in items.items():
        check.equal(
            cm["data"][key].strip(),
            (prov_dir / rel).read_text().strip(),
            f"provisioning {rel} content in the ConfigMap",
        )
    dashboards_dir = chart_dir / "files/grafana/dashboards"
    dashboards = sorted(p.name for p in dashboards_dir.glob("*.json")) if dashboards_dir.is_dir() else []
    if dashboards:
        path = r.values.get("grafana", {}).get("dashboardsPath", "/var/lib/grafana/dashboards")
        check.that(path in mounts, "Grafana mounts the dashboards", mounts)
        dash_cm = r.one("ConfigMap", volumes[mounts[path]]["configMap"]["name"])
        check.equal(sorted(dash_cm["data"]), dashboards, "dashboards ConfigMap holds every dashboard")
    return dep


def check_grafana_role(r: Rendered, secret_name: str, role: str = READER) -> None:
    """Grafana's data source logs in as the read-only role the portal creates: the same role on
    both sides, its password the Secret's GRAFANA_DB_PASSWORD on both sides, and the portal's own
    login (POSTGRES_USER/POSTGRES_PASSWORD, a superuser) nowhere in Grafana's pod."""
    portal = env_of(container(r.one("Deployment", name("portal")), "portal"))
    grafana_dep = r.one("Deployment", name("grafana"))
    grafana = env_of(container(grafana_dep, "grafana"))
    check.equal(
        (portal.get("Grafana__DatabaseUser") or {}).get("value"),
        role,
        "portal Grafana__DatabaseUser: the role it creates",
    )
    check.equal(
        (grafana.get("POSTGRES_USER") or {}).get("value"), role, "Grafana's data source user (POSTGRES_USER): that role"
    )
    check.equal(
        secret_ref(grafana.get("POSTGRES_USER")),
        None,
        "Grafana's POSTGRES_USER is a literal, not the Secret's POSTGRES_USER (the portal's own user)",
    )
    for what, entry in [
        ("portal Grafana__DatabasePassword", portal.get("Grafana__DatabasePassword")),
        ("Grafana's data source password (POSTGRES_PASSWORD)", grafana.get("POSTGRES_PASSWORD")),
    ]:
        check.equal(
            secret_ref(entry), (secret_name, "GRAFANA_DB_PASSWORD"), f"{what} from the Secret's GRAFANA_DB_PASSWORD"
        )
    keys, wholesale = pod_secret_use(grafana_dep)
    check.that(
        keys <= GRAFANA_SECRET_KEYS,
        f"Grafana's pod reads only {sorted(GRAFANA_SECRET_KEYS)} from the Secret: never the portal's POSTGRES_PASSWORD",
        sorted(keys),
    )
    check.equal(wholesale, [], "Grafana's pod sees no Secret wholesale (envFrom, secret or projected volumes)")


def check_role_like_compose(r: Rendered, chart_default: str) -> None:
    """The role and its password mean the same in the chart, the binary and the compose file."""
    portal = env_of(container(r.one("Deployment", name("portal")), "portal"))
    compose_portal, compose_grafana = compose_env("portal"), compose_env("grafana")
    default, _ = readme_env_table()["Grafana__DatabaseUser"]
    check.equal(chart_default, default, "grafana.databaseUser's default = the binary's Grafana__DatabaseUser default")
    user_var, _ = compose_variable(compose_portal["Grafana__DatabaseUser"], "portal Grafana__DatabaseUser")
    check.equal(
        compose_variable(compose_grafana["POSTGRES_USER"], "grafana POSTGRES_USER")[0],
        user_var,
        "compose: Grafana's POSTGRES_USER and the portal's Grafana__DatabaseUser are one variable",
    )
    password_var, _ = compose_variable(compose_portal["Grafana__DatabasePassword"], "portal Grafana__DatabasePassword")
    check.equal(
        (secret_ref(portal.get("Grafana__DatabasePassword")) or (None, None))[1],
        password_var,
        "portal Grafana__DatabasePassword: the Secret key named like compose's variable for it",
    )


def check_provisioning_copies(chart_dir: Path, dashboards_path: str) -> None:
    """The chart's copy of grafana/ must not drift from the repository's (the compose file's)."""
    repo_prov = REPO / "grafana/provisioning"
    chart_prov = chart_dir / "files/grafana/provisioning"
    repo_files = sorted(p.relative_to(repo_prov).as_posix() for p in repo_prov.rglob("*") if p.is_file())
    chart_files = sorted(p.relative_to(chart_prov).as_posix() for p in chart_prov.rglob("*") if p.is_file())
    check.equal(
        chart_files,
        repo_files,
        f"files under {chart_prov} (copy every file of grafana/provisioning into the chart)",
    )
    for rel in repo_files:
        ours, theirs = yaml.safe_load((chart_prov / rel).read_text()), yaml.safe_load((repo_prov / rel).read_text())
        if rel.startswith("datasources/"):
            # The one intended difference: the host comes from the pod's environment.
            for ds in ours.get("datasources", []):
                check.equal(
                    ds.get("url"),
                    "$__env{POSTGRES_HOST}:$__env{POSTGRES_PORT}",
                    f"chart {rel}: url from POSTGRES_HOST/PORT",
                )
            for doc in (ours, theirs):
                for ds in doc.get("datasources", []):
                    ds.pop("url", None)
        if rel.startswith("dashboards/"):
            for provider in ours.get("providers", []):
                check.equal(
                    provider.get("options", {}).get("path"),
                    dashboards_path,
                    f"chart {rel}: provider path = grafana.dashboardsPath",
                )
            for doc in (ours, theirs):
                for provider in doc.get("providers", []):
                    provider.get("options", {}).pop("path", None)
        check.equal(
            ours, theirs, f"chart copy of grafana/provisioning/{rel} matches the repository's (apart from the url/path)"
        )
    repo_dash = REPO / "grafana/dashboards"
    if repo_dash.is_dir():
        for p in sorted(repo_dash.glob("*.json")):
            copy = chart_dir / "files/grafana/dashboards" / p.name
            check.that(copy.is_file(), f"dashboard {p.name} copied into the chart's files/grafana/dashboards")
            check.that(copy.read_bytes() == p.read_bytes(), f"chart copy of dashboard {p.name} is identical")


def check_ingress(r: Rendered, portal_dep: dict[str, Any], grafana_dep: dict[str, Any]) -> None:
    ingresses = r.all("Ingress")
    check.equal(len(ingresses), 2, "two Ingresses (portal, gated Grafana)")
    portal_svc = r.service_for(portal_dep, 8080)["metadata"]["name"]
    grafana_svc = r.service_for(grafana_dep, 3000)["metadata"]["name"]

    def routes(ing: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        out = {}
        for rule in ing["spec"]["rules"]:
            check.equal(rule["host"], HOST, f"Ingress {ing['metadata']['name']} host")
            for p in rule["http"]["paths"]:
                check.equal(p["pathType"], "Prefix", f"Ingress {ing['metadata']['name']} path {p['path']} type")
                port = p["backend"]["service"]["port"]
                out[p["path"]] = (p["backend"]["service"]["name"], port.get("number", port.get("name")))
        return out

    by_path = {}
    for ing in ingresses:
        check.equal(ing["spec"].get("ingressClassName"), "nginx", f"Ingress {ing['metadata']['name']} class")
        tls = ing["spec"].get("tls") or []
        check.that(
            len(tls) == 1 and tls[0]["hosts"] == [HOST] and tls[0].get("secretName"),
            f"Ingress {ing['metadata']['name']} terminates TLS for the host",
            tls,
        )
        for path, backend in routes(ing).items():
            by_path[path] = (ing, backend)
    check.equal(sorted(by_path), ["/", "/grafana"], "Ingress paths")
    portal_ing, portal_backend = by_path["/"]
    grafana_ing, grafana_backend = by_path["/grafana"]
    check.that(
        portal_ing is not grafana_ing, "the Grafana path has an Ingress of its own (annotations are per Ingress)"
    )
    check.that(
        portal_backend[0] == portal_svc and portal_backend[1] in ("http", 8080),
        "/ goes to the portal Service",
        portal_backend,
    )
    check.that(
        grafana_backend[0] == grafana_svc and grafana_backend[1] in ("http", 3000),
        "/grafana goes to the Grafana Service",
        grafana_backend,
    )

    pa = portal_ing["metadata"].get("annotations", {})
    check.equal(
        pa.get("cert-manager.io/cluster-issuer"),
        "letsencrypt-prod",
        "cert-manager issuer annotation on the portal Ingress",
    )
    check.that(
        not any(k.startswith("nginx.ingress.kubernetes.io/auth-") for k in pa),
        "the portal's own paths (sign-in) are not behind auth-url",
        pa,
    )
    check.equal(
        portal_ing["spec"]["tls"][0]["secretName"],
        grafana_ing["spec"]["tls"][0]["secretName"],
        "both Ingresses use the one certificate",
    )

    ga = grafana_ing["metadata"].get("annotations", {})
    check.equal(
        ga.get("nginx.ingress.kubernetes.io/auth-url"),
        f"http://{portal_svc}.{NAMESPACE}.svc.cluster.local:8080/api/auth/check",
        "Grafana auth-url: the portal Service's /api/auth/check",
    )
    check.equal(
        ga.get("nginx.ingress.kubernetes.io/auth-signin"),
        f"https://{HOST}/login?next=$escaped_request_uri",
        "Grafana auth-signin: the portal's sign-in page, back to the Grafana URL",
    )
    check.equal(
        ga.get("nginx.ingress.kubernetes.io/auth-signin-redirect-param"),
        "next",
        "ingress-nginx keeps our next= (no extra rd=)",
    )
    headers = [h.strip() for h in ga.get("nginx.ingress.kubernetes.io/auth-response-headers", "").split(",")]
    wanted = identity_headers()
    check.equal(
        sorted(headers), sorted(wanted), "auth-response-headers lists every identity header of src/auth/forward.rs"
    )
    check.equal(len(wanted), 4, "four identity headers (USER, EMAIL, NAME, ROLE)")


def check_metrics(r: Rendered, portal_dep: dict[str, Any], port: int = METRICS_PORT) -> None:
    """The metrics listener: configured on the container port `metrics`, behind a ClusterIP
    Service of its own that no Ingress routes to."""
    c = container(portal_dep, "portal")
    check.equal(port_number(c, "metrics"), port, "portal container port `metrics` (portal.metrics.port)")
    env = {k: e.get("value") for k, e in env_of(c).items()}
    check.equal(
        env.get("Application__MetricsAddress"),
        f"0.0.0.0:{port}",
        "Application__MetricsAddress listens on the metrics container port (set, not left to the binary's default)",
    )
    svc = r.one("Service", name("portal-metrics"))
    spec = svc["spec"]
    check.equal(spec.get("type"), "ClusterIP", "the metrics Service is ClusterIP (reachable in the cluster only)")
    check.equal(
        spec.get("selector"),
        portal_dep["spec"]["selector"]["matchLabels"],
        "the metrics Service selects the portal's pods",
    )
    check.equal(len(spec["ports"]), 1, "the metrics Service serves one port")
    p = spec["ports"][0]
    check.equal(
        (p.get("name"), p["port"], port_number(c, p["targetPort"]), p.get("protocol")),
        ("metrics", port, port, "TCP"),
        "metrics Service port (name, port, container port it targets, protocol)",
    )
    http_svc = r.service_for(portal_dep, 8080)
    check.that(
        all(port_number(c, q["targetPort"]) != port for q in http_svc["spec"]["ports"]),
        "the portal's HTTP Service does not expose the metrics port",
        http_svc["spec"]["ports"],
    )
    for ing in r.all("Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                where = f"Ingress {ing['metadata']['name']} path {path['path']}"
                check.that(backend["name"] != svc["metadata"]["name"], f"{where} does not route to the metrics Service")
                workload, target = backend_container_port(r, backend["name"], backend["port"])
                check.that(
                    not (workload == portal_dep["metadata"]["name"] and target == port),
                    f"{where} does not reach the portal's metrics port",
                    (workload, target),
                )
        for key, value in (ing["metadata"].get("annotations") or {}).items():
            check.that(
                svc["metadata"]["name"] not in value and f":{port}" not in value,
                f"Ingress {ing['metadata']['name']} annotation {key} does not lead to the metrics listener",
                value,
            )


def check_network_policy(r: Rendered) -> None:
    policies = r.all("NetworkPolicy")
    check.equal(len(policies), 1, "one NetworkPolicy")
    spec = policies[0]["spec"]
    check.equal(sorted(spec["policyTypes"]), ["Egress", "Ingress"], "NetworkPolicy restricts both directions")
    selector = spec["podSelector"].get("matchLabels", {})
    for w in r.workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        check.that(
            all(labels.get(k) == v for k, v in selector.items()), f"the NetworkPolicy covers {w['metadata']['name']}"
        )
    sources = [peer for rule in spec["ingress"] for peer in rule.get("from", [])]
    check.that(
        all(rule.get("from") for rule in spec["ingress"]),
        "every ingress rule names its sources (none open to all)",
        spec["ingress"],
    )
    check.that(
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in sources,
        "ingress from the ingress controller's namespace",
        sources,
    )
    check.that({"podSelector": {}} in sources, "ingress from this namespace", sources)
    check.equal(len(sources), 2, "no other ingress source")
    # What those rules admit, port by port (the ports as the containers declare them).
    portal_c = container(r.one("Deployment", name("portal")), "portal")
    http_ports = {
        "the portal's HTTP port": port_number(portal_c, "http"),
        "Grafana's HTTP port": port_number(container(r.one("Deployment", name("grafana")), "grafana"), "http"),
    }
    check.equal(sorted(http_ports.values()), [3000, 8080], "the HTTP ports (portal 8080, Grafana 3000)")
    metrics = port_number(portal_c, "metrics")
    for what, port in http_ports.items():
        check.that(admits(r, INGRESS_NAMESPACE, port), f"the ingress controller's namespace reaches {what} ({port})")
    for what, port in {"the metrics port": metrics, "the database": 5432}.items():
        check.that(
            not admits(r, INGRESS_NAMESPACE, port),
            f"the ingress controller's namespace does not reach {what} ({port})",
            spec["ingress"],
        )
    for port in [*http_ports.values(), metrics, 5432]:
        check.that(admits(r, NAMESPACE, port), f"pods of this namespace reach port {port}", spec["ingress"])
        check.that(
            not admits(r, SCRAPE_NAMESPACE, port),
            f"without networkPolicy.metricsScrapeNamespaces, namespace {SCRAPE_NAMESPACE} reaches nothing ({port})",
            spec["ingress"],
        )
    egress = spec["egress"]
    dns = [
        rule
        for rule in egress
        if {(p.get("protocol"), p.get("port")) for p in rule.get("ports", [])} == {("UDP", 53), ("TCP", 53)}
    ]
    check.that(len(dns) == 1, "egress allows DNS (53/UDP and 53/TCP)", egress)
    db_labels = r.one("StatefulSet", name("timescaledb"))["spec"]["template"]["metadata"]["labels"]
    db_rules = [
        rule
        for rule in egress
        if any(
            "podSelector" in peer
            and all(db_labels.get(k) == v for k, v in peer["podSelector"].get("matchLabels", {}).items())
            and peer["podSelector"].get("matchLabels")
            for peer in rule.get("to", [])
        )
    ]
    check.that(
        len(db_rules) == 1 and db_rules[0]["ports"] == [{"port": 5432, "protocol": "TCP"}],
        "egress to this release's database on 5432",
        egress,
    )
    for rule in egress:
        check.that(rule.get("to") or rule.get("ports"), "no egress rule allows everything", rule)
        for peer in rule.get("to", []):
            check.that(
                "namespaceSelector" not in peer or rule is dns[0], "egress to other namespaces only for DNS", rule
            )


def check_quota(r: Rendered) -> None:
    quota = r.one("ResourceQuota", name("quota"))["spec"]["hard"]
    expected = {
        "requests.cpu": "4",
        "limits.cpu": "4",
        "requests.memory": "4Gi",
        "limits.memory": "4Gi",
        "persistentvolumeclaims": "5",
        "services": "10",
    }
    check.equal(quota, expected, "ResourceQuota (seed 002: 4 CPUs, 4Gi, 5 PVCs, 10 Services)")
    for kind in ("requests", "limits"):
        for res in ("cpu", "memory"):
            total = sum(
                quantity(c["resources"][kind][res])
                for w in r.workloads()
                for c in w["spec"]["template"]["spec"]["containers"]
            )
            check.that(total <= quantity(quota[f"{kind}.{res}"]), f"the release's {kind}.{res} fit the quota", total)
    pvcs = len(r.all("PersistentVolumeClaim")) + sum(
        len(s["spec"].get("volumeClaimTemplates", [])) for s in r.all("StatefulSet")
    )
    check.that(pvcs <= int(quota["persistentvolumeclaims"]), "the release's PVCs fit the quota", pvcs)
    check.that(
        len(r.all("Service")) <= int(quota["services"]), "the release's Services fit the quota", len(r.all("Service"))
    )


def check_notes(r: Rendered) -> None:
    check.that(f"https://{HOST}/" in r.notes, "NOTES print the portal URL", r.notes)
    check.that("Authentication__DefaultAdminPassword" in r.notes, "NOTES say how to read the admin password", r.notes)
    metrics_url = f"http://{name('portal-metrics')}.{NAMESPACE}.svc:{METRICS_PORT}/metrics"
    check.that(metrics_url in r.notes, "NOTES print the in-cluster metrics URL", r.notes)


def documented_secret_keys(chart_dir: Path) -> dict[str, str]:
    """Where the keys an existingSecret must hold are listed: values.yaml's comment above
    `secrets:` and the first paragraph of the README's "Secrets" section."""
    values = (chart_dir / "values.yaml").read_text()
    m = re.search(r"^# With existingSecret(.*?)^secrets:", values, re.S | re.M)
    readme = (chart_dir / "README.md").read_text()
    n = re.search(r"^## Secrets\n\n(.*?)\n\n", readme, re.S | re.M)
    if not m or not n:
        raise CheckFailed("values.yaml (# With existingSecret ... secrets:) or README.md (## Secrets) not found")
    return {"values.yaml": m.group(1), "README.md \"Secrets\"": n.group(1)}


# The broker's configuration and start script: deploy/mosquitto/, copied into the chart.
MOSQUITTO_FILES = ["mosquitto.conf", "start.sh"]
SEED_MOSQUITTO_IMAGE = "iegomez/mosquitto-go-auth:2.0.18-mosquitto_2.0.18"


# The seed's own install command (seed 002, "Manual Installation"), values verbatim.
SEED_INSTALL = {
    "customer": {"id": "abc123", "email": "john@example.com", "companyName": "Acme Corp"},
    "license": {"key": "eyJhbGc..."},
    "domain": {"base": "iotistic.cloud"},
}


def check_seed_install(chart: Any, env_keys: dict[str, bool]) -> None:
    """`helm install customer-abc123 ./charts/customer-instance --set customer.id=abc123 ...
    --set license.key="eyJhbGc..." --set domain.base=iotistic.cloud`: the chart accepts it, and
    the licence key reaches the portal from the Secret, never as a literal."""
    files = chart.render(SEED_INSTALL, name="customer-abc123", namespace="customer-abc123", is_install=True)
    docs = [d for path, text in files.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    secret = [d for d in docs if d["kind"] == "Secret"][0]
    check.equal(base64.b64decode(secret["data"]["License__Key"]).decode(), "eyJhbGc...", "license.key in the Secret")
    portal = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "customer-abc123-portal"][0]
    env = env_of(container(portal, "portal"))
    check.that(all(k in env_keys for k in env), "the seed's install: portal env holds only keys the binary reads")
    check.equal(secret_ref(env["License__Key"]), (secret["metadata"]["name"], "License__Key"), "License__Key from the Secret")
    check.that("value" not in env["License__Key"], "the licence key is never a literal in the Deployment")
    host = [d for d in docs if d["kind"] == "Ingress"][0]["spec"]["rules"][0]["host"]
    check.equal(host, "abc123.iotistic.cloud", "the seed's host: <customer.id>.<domain.base>")
    # The seed's "/metrics (internal only)" billing exporter: the portal's metrics Service.
    metrics_svc = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "customer-abc123-portal-metrics"]
    check.equal(len(metrics_svc), 1, "the seed's install: the metrics Service (usage figures for billing)")
    check.equal(metrics_svc[0]["spec"].get("type"), "ClusterIP", "the seed's install: the metrics Service is internal")
    check.equal([(p["name"], p["port"]) for p in metrics_svc[0]["spec"]["ports"]], [("metrics", METRICS_PORT)],
                "the seed's install: the metrics Service serves the metrics port")
    check.equal(port_number(container(portal, "portal"), "metrics"), METRICS_PORT, "the seed's install: container port `metrics`")
    routed = [p["backend"].get("service", {}).get("name") for d in docs if d["kind"] == "Ingress"
              for rule in d["spec"].get("rules", []) for p in rule.get("http", {}).get("paths", [])]
    check.that("customer-abc123-portal-metrics" not in routed, "the seed's install: no Ingress routes to the metrics Service", routed)
    r = Rendered(chart, merged(SAMPLE, {"license": {"key": "eyJhbGc...", "publicKey": "x" * 43}}))
    check_kubernetes_validate(r, "with a licence key")
    check.equal(env_of(container(r.one("Deployment", name("portal")), "portal"))["License__PublicKey"].get("value"),
                "x" * 43, "license.publicKey reaches License__PublicKey")
    check.that("License__Key" not in env_of(container(Rendered(chart, SAMPLE).one("Deployment", name("portal")), "portal")),
               "without license.key the portal gets no License__Key (unlicensed)")


def check_mosquitto(chart: Any, chart_dir: Path, env_keys: dict[str, bool]) -> None:
    """mosquitto.enabled: the broker of seed 002 (its image and ports, configured by the stack's
    own deploy/mosquitto/ files), the portal's subscriber pointed at it with the broker account and
    the broker's role from the Secret, and the NetworkPolicy admitting devices to the broker only."""
    for f in MOSQUITTO_FILES:
        copy, original = chart_dir / "files/mosquitto" / f, REPO / "deploy/mosquitto" / f
        check.that(copy.is_file(), f"deploy/mosquitto/{f} copied into the chart's files/mosquitto/")
        check.that(copy.read_bytes() == original.read_bytes(), f"chart copy of deploy/mosquitto/{f} is identical")
    check.that(not any(d["metadata"]["name"] == name("mosquitto") for d in Rendered(chart, SAMPLE).docs),
               "mosquitto.enabled: false (the default) renders no broker")
    r = Rendered(chart, merged(SAMPLE, {"mosquitto": {"enabled": True}}))
    check_kubernetes_validate(r, "with the MQTT broker")
    check_objects(r)
    dep = r.one("Deployment", name("mosquitto"))
    c = container(dep, "mosquitto")
    check.equal(c["image"], SEED_MOSQUITTO_IMAGE, "the broker runs seed 002's mosquitto-go-auth image")
    check.equal(port_number(c, "mqtt"), 1883, "the broker's MQTT port")
    check.equal(port_number(c, "websockets"), 9001, "the broker's WebSockets port")
    cm = r.one("ConfigMap", name("mosquitto-config"))
    for f in MOSQUITTO_FILES:
        check.equal(
            cm["data"][f].rstrip("\n"),
            (REPO / "deploy/mosquitto" / f).read_text().rstrip("\n"),
            f"the broker's ConfigMap holds deploy/mosquitto/{f}",
        )
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    check.equal(volumes[mounts["/mosquitto/config"]].get("configMap", {}).get("name"), name("mosquitto-config"),
                "the ConfigMap is mounted at /mosquitto/config (start.sh's default template path)")
    check.that(c["command"][-1] == "/mosquitto/config/start.sh", "the broker starts through start.sh", c["command"])
    claim = volumes[mounts["/mosquitto/data"]].get("persistentVolumeClaim", {}).get("claimName")
    check.that(claim is not None, "the broker's data (queued QoS 1 messages) is on a PVC", volumes)
    env = env_of(c)
    portal_c = container(r.one("Deployment", name("portal")), "portal")
    portal_env = env_of(portal_c)
    secret_name = name("secrets")
    db_svc = r.service_for(r.one("StatefulSet", name("timescaledb")), 5432)
    check.equal(env["MQTT_DB_HOST"].get("value"), db_svc["metadata"]["name"], "the broker's database host")
    check.equal(secret_ref(env["MQTT_DB_NAME"]), (secret_name, "POSTGRES_DB"), "the broker's database name")
    check.equal(env["MQTT_DB_USER"].get("value"), portal_env["Mqtt__BrokerDatabaseUser"].get("value"),
                "the broker logs in as the role the portal creates (Mqtt__BrokerDatabaseUser)")
    check.that(env["MQTT_DB_USER"].get("value") not in (DB_USER, READER), "the broker's role is its own")
    check.equal(secret_ref(env["MQTT_DB_PASSWORD"]), secret_ref(portal_env["Mqtt__BrokerDatabasePassword"]),
                "the broker's password is the one the portal sets on its role")
    keys, wholesale = pod_secret_use(dep)
    check.equal(keys, {"POSTGRES_DB", "MQTT_DB_PASSWORD"}, "the broker's pod reads only its own role's password")
    check.that(not wholesale, "the broker's pod sees no Secret wholesale", wholesale)
    svc = r.one("Service", name("mosquitto"))
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    check.equal((ports["mqtt"]["port"], ports["websockets"]["port"]), (1883, 9001), "the broker's Service ports (seed)")
    for pname, target in [("mqtt", 1883), ("websockets", 9001)]:
        check.equal(backend_container_port(r, name("mosquitto"), {"name": pname}), (name("mosquitto"), target),
                    f"the Service's {pname} port reaches the broker's {target}")

    check_portal(r, secret_name, env_keys)
    values = {k: e.get("value") for k, e in portal_env.items()}
    check.equal(values.get("Mqtt__Enabled"), "true", "the portal subscribes (Mqtt__Enabled)")
    check.equal(values.get("Mqtt__Host"), name("mosquitto"), "Mqtt__Host is the broker's Service")
    check.equal(values.get("Mqtt__Port"), "1883", "Mqtt__Port")
    check.equal(secret_ref(portal_env["Mqtt__Password"]), (secret_name, "MQTT_PASSWORD"), "Mqtt__Password from the Secret")
    check.equal(values.get("Mqtt__DeviceUrl"), f"mqtt://{HOST}:1883", "device pages show the customer's host")
    data = secret_data(r)
    for key in ("MQTT_PASSWORD", "MQTT_DB_PASSWORD"):
        check.that(re.fullmatch(r"[A-Za-z0-9]{32}", data.get(key, "")) is not None, f"{key} generated", data.get(key))
    check.equal(set(data), {"POSTGRES_DB", "POSTGRES_USER", *GENERATED, "MQTT_PASSWORD", "MQTT_DB_PASSWORD"},
                "Secret keys with the broker")
    check_no_inlined_secrets(r, data)

    # Devices reach the broker's two ports from mqttClientCidrs and through the ingress controller,
    # and nothing else of the release; the portal may reach the broker.
    broker = [p for p in r.all("NetworkPolicy") if p["metadata"]["name"] == name("mosquitto")]
    check.equal(len(broker), 1, "a NetworkPolicy for the broker")
    bspec = broker[0]["spec"]
    check.equal(bspec["podSelector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"],
                "the broker's NetworkPolicy selects the broker's pods only")
    for rule in bspec["ingress"]:
        check.equal(sorted(p["port"] for p in rule["ports"]), [1883, 9001], "the broker's policy opens 1883 and 9001 only")
    cidrs = [peer["ipBlock"]["cidr"] for rule in bspec["ingress"] for peer in rule["from"] if "ipBlock" in peer]
    check.equal(cidrs, ["0.0.0.0/0"], "devices connect from networkPolicy.mqttClientCidrs (default: anywhere)")
    for port in (1883, 9001):
        check.that(admits(r, INGRESS_NAMESPACE, port), f"the ingress controller's namespace reaches the broker ({port})")
    for port in (METRICS_PORT, 5432):
        check.that(not admits(r, INGRESS_NAMESPACE, port), f"the broker's policy opens nothing else ({port})")
    egress = r.one("NetworkPolicy", name("default"))["spec"]["egress"]
    broker_labels = dep["spec"]["template"]["metadata"]["labels"]
    check.that(
        any(
            rule.get("ports") == [{"port": 1883, "protocol": "TCP"}]
            and any(
                all(broker_labels.get(k) == v for k, v in peer.get("podSelector", {}).get("matchLabels", {}).items())
                and peer.get("podSelector", {}).get("matchLabels")
                for peer in rule.get("to", [])
            )
            for rule in egress
        ),
        "egress from the portal to the broker on 1883",
        egress,
    )
    ing = r.one("Ingress", name("mosquitto"))
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    check.equal([p["path"] for p in paths], ["/mqtt"], "wss://<host>/mqtt is routed")
    check.equal(backend_container_port(r, name("mosquitto"), paths[0]["backend"]["service"]["port"]),
                (name("mosquitto"), 9001), "/mqtt reaches the broker's WebSockets listener")
    check.that("cert-manager.io/cluster-issuer" not in ing["metadata"].get("annotations", {}),
               "the /mqtt Ingress reuses the portal's certificate (one issuer per Secret)")

    # Seed 002's broker values are accepted as it writes them; what the broker's configuration
    # fixes cannot be changed by a value that would then be ignored.
    seed = {
        "image": SEED_MOSQUITTO_IMAGE,
        "mqttPort": 1883,
        "websocketPort": 9001,
        "auth": {"allowAnonymous": False, "hasher": "bcrypt", "hasherCost": 10, "logLevel": "info"},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
    }
    Rendered(chart, merged(SAMPLE, {"mosquitto": {"enabled": True, **seed}}))
    for bad, where in [
        ({"auth": {"allowAnonymous": True}}, "/mosquitto/auth/allowAnonymous"),
        ({"auth": {"hasherCost": 12}}, "/mosquitto/auth/hasherCost"),
        ({"auth": {"hasher": "pbkdf2"}}, "/mosquitto/auth/hasher"),
        ({"databaseUser": "postgres"}, "/mosquitto/databaseUser"),
    ]:
        try:
            chart.render(merged(SAMPLE, {"mosquitto": {"enabled": True, **bad}}), name=RELEASE, namespace=NAMESPACE)
        except helm.HelmValuesError as e:
            check.that(where in str(e), f"the schema refuses mosquitto {bad}, naming {where}", str(e))
        else:
            raise CheckFailed(f"the schema should refuse mosquitto {bad}")
    try:
        chart.render(merged(SAMPLE, {"mosquitto": {"enabled": True, "databaseUser": DB_USER}}), name=RELEASE,
                     namespace=NAMESPACE)
    except helm.HelmError as e:
        check.that("mosquitto.databaseUser" in str(e), "the chart refuses the portal's own user as the broker's", str(e))
    else:
        raise CheckFailed("the chart should refuse mosquitto.databaseUser = database.user")


def check_variants(chart: Any, env_keys: dict[str, bool], chart_dir: Path) -> None:
    # Given values win over generated ones; white-label values reach the WhiteLabel__* keys.
    r = Rendered(
        chart,
        merged(
            SAMPLE,
            {
                "secrets": {
                    "defaultAdminPassword": "correct-horse-battery",
                    "postgresPassword": "pg-secret-value-1",
                    "grafanaDatabasePassword": "reader-secret-value-1",
                },
                "grafana": {"databaseUser": "dash_ro"},
                "whiteLabel": {
                    "applicationName": "Acme Energy",
                    "primaryColor": "#112233",
                    "secondaryColor": "#445566",
                    "accentColor": "#778899",
                    "footerText": "Acme 2026",
                },
                "image": {"repository": "registry.example.com/tau-acuvim-portal", "tag": "0.1.0"},
                "portal": {"defaultAdminEmail": "ops@acme.example"},
            },
        ),
    )
    data = secret_data(r)
    check.equal(data["Authentication__DefaultAdminPassword"], "correct-horse-battery", "a given admin password is used")
    check.equal(data["POSTGRES_PASSWORD"], "pg-secret-value-1", "a given database password is used")
    check.equal(data["GRAFANA_DB_PASSWORD"], "reader-secret-value-1", "a given Grafana role password is used")
    check_no_inlined_secrets(r, data)
    check_grafana_role(r, name("secrets"), "dash_ro")
    c = container(r.one("Deployment", name("portal")), "portal")
    env = {k: e.get("value") for k, e in env_of(c).items()}
    for key, value in {
        "ApplicationName": "Acme Energy",
        "PrimaryColor": "#112233",
        "SecondaryColor": "#445566",
        "AccentColor": "#778899",
        "FooterText": "Acme 2026",
    }.items():
        check.equal(env.get(f"WhiteLabel__{key}"), value, f"whiteLabel value -> WhiteLabel__{key}")
    check.equal(
        env.get("Authentication__DefaultAdminEmail"),
        "ops@acme.example",
        "portal.defaultAdminEmail overrides customer.email",
    )
    check.equal(c["image"], "registry.example.com/tau-acuvim-portal:0.1.0", "image.repository/tag")

    # Fleet push + an existing Secret + no NetworkPolicy/quota: still valid, still by reference.
    values = merged(
        SAMPLE,
        {
            "fleetIngest": {"enabled": True, "url": "https://admin.portal.example.com"},
            "secrets": {"existingSecret": "abc0001-credentials"},
            "networkPolicy": {"enabled": False},
            "resourceQuota": {"enabled": False},
        },
    )
    r = Rendered(chart, values, upgrade=True)
    check.equal(r.all("Secret"), [], "with secrets.existingSecret the chart creates no Secret")
    check_grafana_role(r, "abc0001-credentials")
    needed = set().union(*(pod_secret_use(w)[0] for w in r.workloads()))
    check.that({"GRAFANA_DB_PASSWORD", "FleetIngest__Token"} <= needed, "the pods read the existing Secret", needed)
    for where, text in documented_secret_keys(chart_dir).items():
        missing = sorted(k for k in needed if not re.search(rf"(?<![A-Za-z0-9_]){k}(?![A-Za-z0-9_])", text))
        check.that(not missing, f"{where} lists every key an existingSecret must hold", missing)
    check.equal(r.all("NetworkPolicy") + r.all("ResourceQuota"), [], "networkPolicy/resourceQuota can be switched off")
    for w in r.workloads():
        for ctr in w["spec"]["template"]["spec"]["containers"]:
            for e in ctr.get("env") or []:
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check.equal(
                        ref["name"],
                        "abc0001-credentials",
                        f"{w['metadata']['name']} {e['name']} reads the existing Secret",
                    )
    env = env_of(container(r.one("Deployment", name("portal")), "portal"))
    check.that(
        all(k in env_keys for k in env), "fleet variant: portal env holds only keys the binary reads", sorted(env)
    )
    check.equal(env["FleetIngest__Enabled"]["value"], "true", "FleetIngest__Enabled")
    check.equal(env["FleetIngest__Url"]["value"], "https://admin.portal.example.com", "FleetIngest__Url")
    check.equal(
        env["FleetIngest__Token"]["valueFrom"]["secretKeyRef"]["key"],
        "FleetIngest__Token",
        "FleetIngest__Token from the Secret",
    )
    check_kubernetes_validate(r, "fleet push, existing Secret")

    # The chart's own Secret carries the fleet token when it is given.
    r = Rendered(
        chart,
        merged(
            SAMPLE,
            {"fleetIngest": {"enabled": True, "url": "https://admin.portal.example.com", "token": "tok_fleet_123456"}},
        ),
    )
    data = secret_data(r)
    check.equal(data.get("FleetIngest__Token"), "tok_fleet_123456", "fleetIngest.token stored in the Secret")
    check_no_inlined_secrets(r, data)
    egress = r.all("NetworkPolicy")[0]["spec"]["egress"]
    check.that(
        any(p.get("port") == 443 for rule in egress for p in rule.get("ports", [])),
        "fleet push may reach HTTPS",
        egress,
    )
    try:
        Rendered(chart, merged(SAMPLE, {"fleetIngest": {"enabled": True, "url": "https://admin.portal.example.com"}}))
    except helm.HelmError as e:
        check.that(
            "fleetIngest.token" in str(e),
            "fleet push without a token (and no existing Secret) is refused, naming fleetIngest.token",
            str(e),
        )
    else:
        raise CheckFailed("fleet push without a token should be refused")

    # Metrics on another port, scraped from two namespaces: those reach that port and nothing else.
    scrapers = [SCRAPE_NAMESPACE, "observability"]
    r = Rendered(
        chart,
        merged(SAMPLE, {"portal": {"metrics": {"port": 9100}}, "networkPolicy": {"metricsScrapeNamespaces": scrapers}}),
    )
    check_metrics(r, r.one("Deployment", name("portal")), port=9100)
    for ns in scrapers:
        check.that(admits(r, ns, 9100), f"scrape namespace {ns} reaches the metrics port 9100")
        for port in (8080, 3000, 5432, METRICS_PORT):
            check.that(not admits(r, ns, port), f"scrape namespace {ns} reaches only the metrics port, not {port}")
    for ns in (INGRESS_NAMESPACE, "default"):
        check.that(not admits(r, ns, 9100), f"namespace {ns} does not reach the metrics port 9100")
    check.that(admits(r, NAMESPACE, 9100), "pods of this namespace still reach the metrics port 9100")
    check_kubernetes_validate(r, "metrics on 9100, two scrape namespaces")

    # Metrics off: the binary told `off`, no container port, no Service, no scrape rule.
    r = Rendered(
        chart,
        merged(
            SAMPLE,
            {
                "portal": {"metrics": {"enabled": False}},
                "networkPolicy": {"metricsScrapeNamespaces": [SCRAPE_NAMESPACE]},
            },
        ),
    )
    c = container(r.one("Deployment", name("portal")), "portal")
    env = {k: e.get("value") for k, e in env_of(c).items()}
    check.equal(
        env.get("Application__MetricsAddress"), "off", "metrics off: the portal is told Application__MetricsAddress=off"
    )
    check.equal([p["name"] for p in c["ports"]], ["http"], "metrics off: the portal declares only its HTTP port")
    services = [s["metadata"]["name"] for s in r.all("Service")]
    check.that(name("portal-metrics") not in services, "metrics off: no metrics Service", services)
    check.that(
        not any(p.get("name") == "metrics" for svc in r.all("Service") for p in svc["spec"]["ports"]),
        "metrics off: no Service port named metrics",
    )
    check.that(not admits(r, SCRAPE_NAMESPACE, METRICS_PORT), "metrics off: the scrape namespace is admitted nowhere")
    check.that("/metrics" not in r.notes, "metrics off: NOTES print no metrics URL", r.notes)


def main() -> int:
    chart_dir = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "deploy/helm/tau-portal").resolve()
    if not (chart_dir / "Chart.yaml").is_file():
        print(f"helm chart: FAILED: {chart_dir} has no Chart.yaml", file=sys.stderr)
        return 1
    try:
        with helm.Chart.load(chart_dir) as chart:
            meta = chart.metadata
            check.equal(meta.get("apiVersion"), "v2", "Chart.yaml apiVersion")
            check.equal(meta.get("name"), "tau-portal", "chart name")
            check_lint(chart_dir)
            check_schema_refusals(chart)
            env_keys = readme_env_keys()
            r = Rendered(chart, SAMPLE)
            check_kubernetes_validate(r, "sample customer")
            check_objects(r)
            secret = check_secret(r)
            check_secret_kept(chart_dir)
            check_no_inlined_secrets(r, secret)
            secret_name = name("secrets")
            portal = check_portal(r, secret_name, env_keys)
            check_database(r, secret_name)
            grafana = check_grafana(r, secret_name, chart_dir)
            check_grafana_role(r, secret_name)
            check_role_like_compose(r, chart.values["grafana"]["databaseUser"])
            check_provisioning_copies(chart_dir, chart.values["grafana"]["dashboardsPath"])
            check_ingress(r, portal, grafana)
            check_metrics(r, portal)
            check_network_policy(r)
            check_quota(r)
            check_notes(r)
            again = Rendered(chart, SAMPLE)
            pw = lambda rr: rr.one("Secret", name("secrets"))["data"]["POSTGRES_PASSWORD"]  # noqa: E731
            check.that(pw(again) != pw(r), "passwords are generated per install, not fixed in the chart")
            check_variants(chart, env_keys, chart_dir)
            check_mosquitto(chart, chart_dir, env_keys)
            check_seed_install(chart, env_keys)
    except CheckFailed as e:
        print(f"helm chart: FAILED after {check.passed} passed checks: {e}", file=sys.stderr)
        return 1
    except helm.HelmError as e:
        print(f"helm chart: FAILED after {check.passed} passed checks: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"helm chart: {check.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
