"""The Helm chart (``deploy/helm/okta-bridge``), validated offline: no cluster is needed.

``helm lint`` and ``helm template`` (a pinned helm fetched by ``scripts/helm.sh``) render the chart for the value
sets in ``deploy/helm/okta-bridge/ci/``: the chart's defaults with only the required values, KEDA off, two pools
(management-API trigger, one RabbitMQ user per service, NetworkPolicies on), the ServiceMonitor on, and the web
console behind an Ingress signing in with Okta (OIDC). Every
rendered object is validated against the Kubernetes schemas of PyPI's ``kubernetes-validate`` for the oldest and
newest versions the chart supports, the KEDA and ServiceMonitor objects against their CRD schemas
(``tests/fixtures/schemas/``, upstream copies). Then what the schemas cannot say: the dispatchers scale on the sum
of their pool's partition queues (named as ``okta_bridge.topology`` names them) within the pool's partitions, the
pods run locked down with probes on the metrics port, the connectors ConfigMap is a file the services accept, and
values that contradict each other fail with a message saying what to change.

The web console's package (``python -m bridge_console``) comes from a branch of its own: until it is merged, the variables
the chart gives it are checked against its documented settings (``CONSOLE_SETTINGS``, docs/deploy.md).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from okta_bridge.connectors import load_connectors
from okta_bridge.topology import partition_queue

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "okta-bridge"
CI = CHART / "ci"
SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
KUBE_VERSIONS = ("1.31.0", "1.33.0")  # the oldest with unhealthyPodEvictionPolicy GA, and a current one
RENDER_VERSION = "1.33.0"
CAPABILITIES = ("keda.sh/v1alpha1", "monitoring.coreos.com/v1")
VALUE_SETS = ("required", "keda-off", "two-pools", "servicemonitor", "console")
PEAK_RSS_MB = 107  # the largest per-service peak RSS of the benchmark (docs/benchmark.md)
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
}


# ------------------------------------------------------------------ helpers

@functools.cache
def helm() -> str:
    """The pinned helm (scripts/helm.sh fetches it once into .run/tools; `make test` runs it in scripts/deps.sh)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "helm.sh")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"scripts/helm.sh failed: {out.stderr}"
    return str(ROOT / out.stdout.strip().splitlines()[-1])


def values_file(name: str) -> Path:
    return CI / f"{name}-values.yaml"


def template(*args: str, values: str | None = "required", capabilities=CAPABILITIES,
             kube_version: str = RENDER_VERSION) -> subprocess.CompletedProcess:
    cmd = [helm(), "template", "rel", str(CHART), "--namespace", "bridge", "--kube-version", kube_version]
    for api in capabilities:
        cmd += ["--api-versions", api]
    if values:
        cmd += ["-f", str(values_file(values))]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)


def template_values(values: dict[str, Any], capabilities=CAPABILITIES) -> subprocess.CompletedProcess:
    """Render with a whole values document (written next to the test's temporary files by helm's stdin)."""
    cmd = [helm(), "template", "rel", str(CHART), "--namespace", "bridge", "--kube-version", RENDER_VERSION, "-f", "-"]
    for api in capabilities:
        cmd += ["--api-versions", api]
    return subprocess.run(cmd, input=yaml.safe_dump(values), capture_output=True, text=True, timeout=60)


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    out = template(values=name)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def required_values() -> dict[str, Any]:
    return yaml.safe_load(values_file("required").read_text())


def objects(docs, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in objects(docs, kind)}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and the In/NotIn/Exists/DoesNotExist expressions) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        if not {"In": present and value in e.get("values", []), "NotIn": value not in e.get("values", []),
                "Exists": present, "DoesNotExist": not present}[e["operator"]]:
            return False
    return True


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def dispatchers(docs) -> dict[str, dict[str, Any]]:
    """pool -> its dispatcher Deployment."""
    out = {}
    for dep in objects(docs, "Deployment"):
        container = dep["spec"]["template"]["spec"]["containers"][0]
        if container["args"] == ["python", "-m", "scim_dispatcher"]:
            out[env_of(container)["DISPATCHER_POOLS"]] = dep
    return out


def connectors_of(docs, monkeypatch, tmp_path) -> Any:
    """The rendered connectors file, loaded as the services load it (its secrets set to placeholders)."""
    text = by_name(docs, "ConfigMap")["rel-okta-bridge-connectors"]["data"]["connectors.yaml"]
    for name in re.findall(r"(?:value_env|username_env|password_env): (\w+)", text):
        monkeypatch.setenv(name, "placeholder-secret")
    path = tmp_path / "connectors.yaml"
    path.write_text(text)
    return load_connectors(path)


@functools.cache
def crd_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / filename).read_text())
    return next(v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage"))["schema"][
        "openAPIV3Schema"]


# ------------------------------------------------------------------ lint and schemas

@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes(name):
    out = subprocess.run([helm(), "lint", str(CHART), "--strict", "--kube-version", RENDER_VERSION,
                          "-f", str(values_file(name))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_is_valid_for_kubernetes_and_its_crd(name, kube_version):
    docs = rendered(name)
    assert docs
    for doc in docs:
        crd = CRDS.get((doc["apiVersion"], doc["kind"]))
        if crd:
            jsonschema.validate(doc, crd_schema(crd))
        else:  # strict: an unknown field (a typo) is an error too
            kubernetes_validate.validate(doc, kube_version, strict=True)


def test_crd_schemas_catch_a_wrong_scaled_object():
    """The CRD check is not vacuous: a ScaledObject without its target, or a wrong metricType, is refused."""
    scaled = copy.deepcopy(objects(rendered("required"), "ScaledObject")[0])
    wrong_type = copy.deepcopy(scaled)
    wrong_type["spec"]["advanced"]["scalingModifiers"]["metricType"] = "Sum"
    del scaled["spec"]["scaleTargetRef"]
    for doc in (scaled, wrong_type):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, crd_schema(CRDS[("keda.sh/v1alpha1", "ScaledObject")]))


# ------------------------------------------------------------------ what every pod gets

@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_is_locked_down_and_probed_on_the_metrics_port(name):
    docs = rendered(name)
    workloads = objects(docs, "Deployment") + objects(docs, "Job")
    assert len(objects(docs, "Deployment")) >= 4
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        where = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where
            assert "/run/secrets" in mounts and "/etc/okta-bridge" in mounts, where
            assert container["resources"]["requests"]["memory"].endswith("Mi")
            request = int(container["resources"]["requests"]["memory"][:-2])
            limit = int(container["resources"]["limits"]["memory"][:-2])
            assert request >= PEAK_RSS_MB * 1.15 or workload["kind"] == "Job", (where, request)
            assert limit >= 2 * request, where
            assert "cpu" not in container["resources"].get("limits", {}), where
            if workload["kind"] == "Job":
                continue
            env = env_of(container)
            assert env["METRICS_PORT"] == "9100" and env["BROKER_DECLARE"] == "false", where
            assert env["CONNECTORS_FILE"] == "/etc/okta-bridge/connectors.yaml"
            assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"], where
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, where
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, where
            assert container["startupProbe"]["httpGet"]["port"] == "metrics"
            ready = container["readinessProbe"]  # a dropped broker connection: out of the Service within seconds
            assert ready["periodSeconds"] * ready["failureThreshold"] <= 15, where
        assert "checksum/connectors" in workload["spec"]["template"]["metadata"].get("annotations", {}) or \
            workload["kind"] == "Job"


def test_one_image_the_four_services_and_the_console_with_a_service_account_and_no_rbac():
    docs = rendered("required")
    args = sorted(" ".join(d["spec"]["template"]["spec"]["containers"][0]["args"])
                  for d in objects(docs, "Deployment"))
    assert args == ["python -m audit_recorder", "python -m bridge_console", "python -m queue_poller",
                    "python -m scim_dispatcher", "python -m translator"]
    images = {c["image"] for d in objects(docs, "Deployment") + objects(docs, "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert len(images) == 1
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & {d["kind"] for d in docs}
    (account,) = [d for d in objects(docs, "ServiceAccount") if "helm.sh/hook" not in d["metadata"].get(
        "annotations", {})]
    assert account["automountServiceAccountToken"] is False
    poller = by_name(docs, "Deployment")["rel-okta-bridge-queue-poller"]
    assert poller["spec"]["replicas"] >= 2  # standbys behind the leader lease
    for dep in objects(docs, "Deployment"):  # a node's loss takes at most its share of each component
        (spread,) = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_each_deployment_has_a_pdb_that_lets_unhealthy_pods_go():
    docs = rendered("two-pools")
    pdbs = objects(docs, "PodDisruptionBudget")
    for dep in objects(docs, "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, dep["metadata"]["name"]
        assert matching[0]["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_secrets_come_from_existing_secrets_each_service_only_its_own():
    docs = rendered("two-pools")
    deployments = by_name(docs, "Deployment")

    def sources(workload) -> dict[str, list[str] | None]:
        vol = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets")
        return {s["secret"]["name"]: [i["key"] for i in s["secret"]["items"]] if "items" in s["secret"] else None
                for s in vol["projected"]["sources"]}

    assert not objects(docs, "Secret")  # the chart never holds a credential
    poller = sources(deployments["rel-okta-bridge-queue-poller"])
    assert poller == {"okta-bridge-rabbitmq-poller": ["RABBITMQ_URL"], "okta-bridge-mongodb": ["MONGODB_URL"],
                      "okta-bridge-okta": ["OKTA_PRIVATE_KEY"]}
    dispatcher = sources(deployments["rel-okta-bridge-dispatcher-hr-apps"])
    assert dispatcher == {"okta-bridge-rabbitmq-dispatcher": ["RABBITMQ_URL"], "okta-bridge-mongodb": ["MONGODB_URL"],
                          "okta-bridge-targets": None}  # the whole Secret: each key a connector's *_env
    audit = sources(deployments["rel-okta-bridge-audit-recorder"])
    assert audit["okta-bridge-audit-api"] == ["API_TOKENS"] and "okta-bridge-okta" not in audit
    # the console: its own RabbitMQ user, Okta's read credential, the targets (preview), the audit API's tokens; the
    # OIDC client secret only with an OIDC app
    console = sources(deployments["rel-okta-bridge-console"])
    assert console == {"okta-bridge-rabbitmq-console": ["RABBITMQ_URL"], "okta-bridge-mongodb": ["MONGODB_URL"],
                       "okta-bridge-okta": ["OKTA_PRIVATE_KEY"], "okta-bridge-targets": None,
                       "okta-bridge-audit-api": ["API_TOKENS"]}
    oidc = sources(by_name(rendered("console"), "Deployment")["rel-okta-bridge-console"])
    assert oidc["okta-bridge-console-oidc"] == ["CONSOLE_OIDC_CLIENT_SECRET"]
    job = next(d for d in objects(docs, "Job"))
    assert sources(job) == {"okta-bridge-rabbitmq-topology": ["RABBITMQ_URL"]}
    ssws = sources(by_name(rendered("keda-off"), "Deployment")["rel-okta-bridge-translator"])
    assert ssws["okta-bridge-okta"] == ["OKTA_API_TOKEN"]
    assert env_of(by_name(rendered("keda-off"), "Deployment")["rel-okta-bridge-translator"]["spec"]["template"][
        "spec"]["containers"][0])["OKTA_API_TOKEN_ID"] == "00T1bridgetoken00001"


def test_the_audit_api_has_a_service_and_accepts_its_names():
    docs = rendered("two-pools")
    service = by_name(docs, "Service")["rel-okta-bridge-audit"]
    dep = by_name(docs, "Deployment")["rel-okta-bridge-audit-recorder"]
    assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["ports"][0]["targetPort"] == "api"
    assert {"name": "api", "containerPort": 8070, "protocol": "TCP"} in container["ports"]
    env = env_of(container)
    assert env["AUDIT_HOST"] == "0.0.0.0" and env["AUDIT_PORT"] == "8070"
    hosts = env["API_ALLOWED_HOSTS"].split(",")
    assert "rel-okta-bridge-audit" in hosts and "rel-okta-bridge-audit.bridge.svc.cluster.local" in hosts
    assert "audit.bridge.example.com" in hosts


# ------------------------------------------------------------------ the web console

def test_the_console_serves_its_pages_on_a_service_with_the_settings_it_documents():
    docs = rendered("required")
    dep = by_name(docs, "Deployment")["rel-okta-bridge-console"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert container["args"] == ["python", "-m", "bridge_console"] and dep["spec"]["replicas"] >= 2  # sessions in MongoDB
    assert {"name": "http", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    assert env["CONSOLE_HOST"] == "0.0.0.0" and env["CONSOLE_PORT"] == "8090"
    assert env["OTEL_SERVICE_NAME"] == "console" and env["OKTA_ORG_URL"] == "https://acme.okta.com"
    assert env["OKTA_SCOPES"].split() == ["okta.users.read", "okta.apps.read", "okta.groups.read"]  # read only
    # no OIDC app given: OIDC off (tokens only), reached through a port-forward
    assert env["CONSOLE_OIDC_CLIENT_ID"] == "" and env["CONSOLE_PUBLIC_URL"] == "http://localhost:8090"
    assert "CONSOLE_OIDC_ISSUER" not in env and "CONSOLE_TRACE_URL_TEMPLATE" not in env  # the console's defaults
    assert (env["CONSOLE_ADMIN_GROUPS"], env["CONSOLE_VIEWER_GROUPS"]) == ("okta-bridge-admins", "okta-bridge-viewers")
    assert env["CONSOLE_OIDC_GROUPS_CLAIM"] == "groups"
    assert (env["CONSOLE_ACTIONS_PER_MINUTE"], env["CONSOLE_SESSION_TTL_S"]) == ("10", "3600")
    hosts = env["API_ALLOWED_HOSTS"].split(",")
    assert {"rel-okta-bridge-console", "rel-okta-bridge-console.bridge.svc.cluster.local", "localhost"} <= set(hosts)
    service = by_name(docs, "Service")["rel-okta-bridge-console"]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(dep))
    assert service["spec"]["ports"] == [{"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"}]
    assert not objects(docs, "Ingress")  # off by default


def test_the_console_behind_an_ingress_signs_in_with_okta_and_links_traces():
    docs = rendered("console")
    dep = by_name(docs, "Deployment")["rel-okta-bridge-console"]
    env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
    assert dep["spec"]["replicas"] == 3
    (ingress,) = objects(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "bridge-console.example.com" and ingress["spec"]["ingressClassName"] == "nginx"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-okta-bridge-console", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"secretName": "bridge-console-tls", "hosts": ["bridge-console.example.com"]}]
    # the public address follows the Ingress (https with its TLS): the redirect URI to register in Okta
    assert env["CONSOLE_PUBLIC_URL"] == "https://bridge-console.example.com"
    assert "bridge-console.example.com" in env["API_ALLOWED_HOSTS"].split(",")
    assert "127.0.0.1" not in env["API_ALLOWED_HOSTS"].split(",")
    assert env["CONSOLE_OIDC_CLIENT_ID"] == "0oa1bridgeconsoleweb1"
    assert env["CONSOLE_VIEWER_GROUPS"] == "okta-bridge-viewers,helpdesk"
    assert env["CONSOLE_TRACE_URL_TEMPLATE"] == "https://jaeger.example.com/trace/{trace_id}"
    assert env["CONSOLE_ACTIONS_PER_MINUTE"] == "5"
    assert "CONSOLE_OIDC_CLIENT_SECRET" not in env  # a file of /run/secrets, never an environment entry
    values = required_values()
    values["console"] = {"publicUrl": "https://bridge.example.com/", "oidc": {"issuer": "https://acme.okta.com/oauth2/aus1"}}
    out = template_values(values)
    assert out.returncode == 0, out.stderr
    dep = by_name([d for d in yaml.safe_load_all(out.stdout) if d], "Deployment")["rel-okta-bridge-console"]
    env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
    assert env["CONSOLE_PUBLIC_URL"] == "https://bridge.example.com"  # no trailing slash: {public}/oidc/callback
    assert env["CONSOLE_OIDC_ISSUER"] == "https://acme.okta.com/oauth2/aus1"
    assert "CONSOLE_ALLOW_INSECURE_HTTP" not in env
    values["console"] = {"publicUrl": "http://console.internal", "allowInsecureHttp": True}  # TLS ends before it
    out = template_values(values)
    assert out.returncode == 0, out.stderr
    env = env_of(by_name([d for d in yaml.safe_load_all(out.stdout) if d], "Deployment")["rel-okta-bridge-console"][
        "spec"]["template"]["spec"]["containers"][0])
    assert (env["CONSOLE_PUBLIC_URL"], env["CONSOLE_ALLOW_INSECURE_HTTP"]) == ("http://console.internal", "true")


def test_the_console_can_be_left_out():
    values = required_values()
    values["console"] = {"enabled": False}
    values["networkPolicy"] = {"enabled": True, "okta": {"cidrs": ["198.51.100.0/24"]},
                               "consoleFrom": [{"namespaceSelector": {}}]}
    out = template_values(values)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert not [d for d in docs if "console" in d["metadata"]["name"]]
    okta = by_name(docs, "NetworkPolicy")["rel-okta-bridge-okta"]["spec"]["podSelector"]["matchExpressions"]
    assert "console" not in next(e for e in okta if e["key"] == "app.kubernetes.io/component")["values"]


# ------------------------------------------------------------------ connectors, pools and scaling

def test_connectors_configmap_is_a_file_the_services_accept_and_rolls_the_pods(monkeypatch, tmp_path):
    docs = rendered("two-pools")
    connectors = connectors_of(docs, monkeypatch, tmp_path)
    assert {a.name for a in connectors.apps} == {"jira", "hr"}
    assert connectors.partitions("default") == 16 and connectors.partitions("hr_apps") == 2
    hook = by_name(docs, "ConfigMap")["rel-okta-bridge-topology"]  # the hook's own copy: the same file
    assert hook["data"] == by_name(docs, "ConfigMap")["rel-okta-bridge-connectors"]["data"]

    def checksums(out) -> set[str]:
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/connectors"]
                for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"}

    values = required_values()
    before = template_values(values)
    values["connectors"]["apps"][0]["max_concurrency"] = 9
    after = template_values(values)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert len(checksums(before.stdout)) == len(checksums(after.stdout)) == 1
    assert checksums(before.stdout) != checksums(after.stdout)


def test_keda_sums_each_pools_partition_queues_within_its_partitions(monkeypatch, tmp_path):
    docs = rendered("required")
    connectors = connectors_of(docs, monkeypatch, tmp_path)
    (scaled,) = objects(docs, "ScaledObject")
    deployment = dispatchers(docs)["default"]
    partitions = connectors.partitions("default")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # KEDA owns the count
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["queueName"] for t in triggers] == [partition_queue("default", p).name
                                                             for p in range(partitions)]
    assert all(t["type"] == "rabbitmq" and t["authenticationRef"]["name"] == "rel-okta-bridge-keda-rabbitmq"
               for t in triggers)
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert sorted(modifiers["formula"].split(" + ")) == sorted(t["name"] for t in triggers)
    assert modifiers["metricType"] == "AverageValue" and int(modifiers["target"]) > 0
    scale_down = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60
    (auth,) = objects(docs, "TriggerAuthentication")
    assert auth["metadata"]["name"] == "rel-okta-bridge-keda-rabbitmq"
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "host", "name": "okta-bridge-keda", "key": "host"}]


def test_two_pools_get_a_deployment_each_and_a_management_api_sum_matching_only_their_queues():
    docs = rendered("two-pools")
    pools = dispatchers(docs)
    assert set(pools) == {"default", "hr_apps"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in objects(docs, "ScaledObject")}
    for pool, partitions, other in (("default", 16, "hr_apps"), ("hr_apps", 2, "default")):
        spec = scaled[pools[pool]["metadata"]["name"]]["spec"]
        assert spec["maxReplicaCount"] <= partitions
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert meta["protocol"] == "http" and meta["useRegex"] == "true" and meta["operation"] == "sum"
        pattern = re.compile(meta["queueName"])
        assert all(pattern.search(partition_queue(pool, p).name) for p in range(partitions))
        assert not any(pattern.search(partition_queue(other, p).name) for p in range(4))
        assert not pattern.search(f"plans.{pool}.hold")  # a parked plan is not backlog to scale on
    grace = {pool: dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] for pool, dep in pools.items()}
    assert grace == {"default": 90, "hr_apps": 150}  # above the pool's longest timeout_s (30, 120) + a drain


def test_keda_off_runs_fixed_replicas():
    docs = rendered("keda-off")
    assert not objects(docs, "ScaledObject") and not objects(docs, "TriggerAuthentication")
    assert dispatchers(docs)["default"]["spec"]["replicas"] == 3
    env = env_of(dispatchers(docs)["default"]["spec"]["template"]["spec"]["containers"][0])
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc" and env["OTEL_TRACES_EXPORTER"] == "otlp"


def test_the_topology_hook_declares_before_install_and_upgrade():
    docs = rendered("required")
    (job,) = objects(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["python", "-m", "bridgectl", "topology", "apply"]
    import importlib.util
    assert importlib.util.find_spec(f"{args[2]}.__main__") is not None, "the hook's module must be runnable with -m"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # what the hook needs exists before it: its ConfigMap and ServiceAccount are hooks of a lower weight
    needs = [d for d in docs if d["metadata"]["name"] == "rel-okta-bridge-topology" and d["kind"] != "Job"]
    assert {d["kind"] for d in needs} == {"ConfigMap", "ServiceAccount"}
    assert all(int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
               for d in needs)


def test_service_monitor_scrapes_every_pod_on_metrics():
    docs = rendered("servicemonitor")
    (monitor,) = objects(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    services = [s for s in objects(docs, "Service")
                if s["metadata"]["labels"].items() >= monitor["spec"]["selector"]["matchLabels"].items()]
    (service,) = services
    assert service["spec"]["ports"][0]["name"] == "metrics"
    for dep in objects(docs, "Deployment"):
        assert service["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert not objects(rendered("required"), "ServiceMonitor")


def test_network_policies_allow_only_what_each_service_needs():
    docs = rendered("two-pools")
    policies = by_name(docs, "NetworkPolicy")
    assert set(policies) == {"rel-okta-bridge-base", "rel-okta-bridge-okta", "rel-okta-bridge-targets",
                             "rel-okta-bridge-audit-api", "rel-okta-bridge-console"}
    for policy in policies.values():
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), policy["metadata"]["name"]  # an empty `to` would allow every address
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), policy["metadata"]["name"]
    base = policies["rel-okta-bridge-base"]["spec"]
    ports = sorted(p["port"] for rule in base["egress"] for p in rule["ports"])
    assert ports == sorted([53, 53, 5672, 5671, 27017, 4317, 4318])
    deployments = by_name(docs, "Deployment")

    def selected(policy: str) -> set[str]:
        return {name for name, dep in deployments.items()
                if selects(policies[policy]["spec"]["podSelector"], pod_labels(dep))}

    okta = policies["rel-okta-bridge-okta"]["spec"]  # the console reads Okta and signs people in with it
    assert selected("rel-okta-bridge-okta") == {"rel-okta-bridge-queue-poller", "rel-okta-bridge-translator",
                                                "rel-okta-bridge-console"}
    assert okta["egress"][0]["to"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    # the targets: the dispatchers write, the console's preview reads
    assert selected("rel-okta-bridge-targets") == {d["metadata"]["name"] for d in dispatchers(docs).values()} | {
        "rel-okta-bridge-console"}
    # the console's pages: from the peers of networkPolicy.consoleFrom, on its port only
    assert selected("rel-okta-bridge-console") == {"rel-okta-bridge-console"}
    (rule,) = policies["rel-okta-bridge-console"]["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8090, "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert selected("rel-okta-bridge-base") == set(deployments)  # DNS, RabbitMQ, MongoDB, OTLP, metrics: every pod
    assert not objects(rendered("required"), "NetworkPolicy")  # off by default (docs/deploy.md turns them on)


# ------------------------------------------------------------------ bad input

def _with(**changes) -> dict[str, Any]:
    values = required_values()
    for path, value in changes.items():
        node = values
        *parents, leaf = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


BAD = {
    "keda on with fixed replicas": (
        _with(dispatchers={"default": {"replicas": 3}}),
        "dispatchers.default: replicas is set while keda.enabled=true"),
    "more maximum replicas than partitions": (
        _with(dispatchers={"default": {"maxReplicaCount": 9}}),
        "dispatchers.default: maxReplicaCount 9 is more than the pool's 8 partitions"),
    "more fixed replicas than partitions": (
        _with(keda={"enabled": False}, dispatchers={"default": {"replicas": 5}},
              connectors__pools={"default": {"partitions": 4}}),
        "dispatchers.default: replicas 5 is more than the pool's 4 partitions"),
    "a pool without a dispatcher deployment": (
        _with(connectors__apps=[*required_values()["connectors"]["apps"],
                                {"okta_app_id": "0oa1examplehr0000001", "name": "hr",
                                 "base_url": "https://hr.example.com/scim/v2/", "pool": "hr"}]),
        'pool "hr" of the connectors file has no dispatcher Deployment: add dispatchers.hr'),
    "a dispatcher without a pool": (
        _with(dispatchers={"default": {}, "hr": {}}),
        "dispatchers.hr serves no pool of the connectors file"),
    "a grace period shorter than a drain": (
        _with(dispatchers={"default": {"terminationGracePeriodSeconds": 40}}),
        "terminationGracePeriodSeconds 40 is shorter than a drain and the partition release"),
    "no org url": (_with(okta__orgUrl=""), "okta.orgUrl is required"),
    "no connectors": (_with(connectors__apps=[]), "connectors.apps is empty"),
    "a console ingress without a host": (
        _with(console__ingress={"enabled": True}), "console.ingress.host is required with console.ingress.enabled"),
    "a console ingress without tls": (
        _with(console__ingress={"enabled": True, "host": "console.example.com"}),
        "the console's public URL would be http://console.example.com, which the console refuses"),
    "a plain http public url": (
        _with(console__publicUrl="http://console.example.com"),
        "set console.publicUrl to the https:// address your load balancer serves, or console.allowInsecureHttp=true"),
}


@pytest.mark.parametrize("case", BAD)
def test_contradicting_values_fail_with_a_clear_message(case):
    values, message = BAD[case]
    out = template_values(values)
    assert out.returncode != 0, f"{case}: rendered"
    assert message in out.stderr, out.stderr


def test_keda_or_service_monitor_without_their_api_in_the_cluster_fail_clearly():
    out = template(capabilities=())
    assert out.returncode != 0
    assert "keda.enabled=true but the cluster has no KEDA (keda.sh/v1alpha1)" in out.stderr
    out = template(values="servicemonitor", capabilities=("keda.sh/v1alpha1",))
    assert "serviceMonitor.enabled=true but the cluster has no Prometheus Operator" in out.stderr


@pytest.mark.parametrize(("change", "message"), [
    ({"keda": {"trigger": "sum"}}, "at '/keda/trigger': value must be one of 'queues', 'managementApi'"),
    ({"okta": {"orgUrl": "http://acme.okta.com", "clientId": "0oa1bridgeserviceapp01"}}, "at '/okta/orgUrl'"),
    ({"dispatcherDefaults": {"minReplicaCount": 0}}, "at '/dispatcherDefaults/minReplicaCount': minimum"),
    ({"connectors": {"apps": [{"okta_app_id": "jira", "name": "jira", "base_url": "https://j.example.com/v1/"}]}},
     "at '/connectors/apps/0/okta_app_id'"),
    ({"queuePoller": {"replica": 2}}, "additional properties 'replica' not allowed"),
    ({"console": {"publicUrl": "https://console.example.com/bridge"}}, "at '/console/publicUrl'"),
    ({"console": {"traceUrlTemplate": "https://jaeger.example.com/trace/"}}, "at '/console/traceUrlTemplate'"),
    ({"console": {"oidc": {"clientId": "console-app"}}}, "at '/console/oidc/clientId'"),
    ({"console": {"replicas": 0}}, "at '/console/replicas': minimum"),
    ({"console": {"ingress": {"host": "https://console.example.com"}}}, "at '/console/ingress/host'"),
    ({"console": {"oidc": {"secret": "s3cr3t"}}}, "additional properties 'secret' not allowed"),
])
def test_values_schema_rejects_a_wrong_value(change, message):
    values = required_values()
    for key, value in change.items():
        values[key] = {**values.get(key, {}), **value}
    out = template_values(values)
    assert out.returncode != 0 and "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def test_values_schema_is_valid_json_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


# ------------------------------------------------------------------ the settings the services read

# Settings the other branches of the same release add to the services (issue 9: the topology and the audit API's
# tokens; issue 10: JSON logs). Each is named in the README's settings table once merged.
_MERGED_ALONGSIDE = {"BROKER_DECLARE", "LOG_LEVEL", "API_ALLOWED_HOSTS"}


# The web console's settings (docs/deploy.md, "The web console"), written in a branch of its own: what the chart
# may give it until its package is merged here, besides the shared settings (RabbitMQ, MongoDB, the connectors file,
# Okta). Its settings classes are read instead once it is.
CONSOLE_SETTINGS = {"CONSOLE_HOST", "CONSOLE_PORT", "CONSOLE_PUBLIC_URL", "CONSOLE_ALLOW_INSECURE_HTTP",
                    "CONSOLE_OKTA_RESERVE", "CONSOLE_OIDC_ISSUER", "CONSOLE_OIDC_CLIENT_ID",
                    "CONSOLE_OIDC_CLIENT_SECRET", "CONSOLE_OIDC_GROUPS_CLAIM", "CONSOLE_ADMIN_GROUPS",
                    "CONSOLE_VIEWER_GROUPS", "CONSOLE_TRACE_URL_TEMPLATE", "CONSOLE_ACTIONS_PER_MINUTE",
                    "CONSOLE_SESSION_TTL_S", "API_TOKENS", "API_ALLOWED_HOSTS"}


def _settings_of(module: str) -> dict[str, Any]:
    """Every variable a service's settings classes read -> its pydantic field."""
    import importlib
    import importlib.util

    from pydantic_settings import BaseSettings

    if module == "bridge_console" and importlib.util.find_spec("bridge_console") is None:
        from okta_bridge.settings import BridgeSettings, OktaSettings

        shared = {(cls.model_config.get("env_prefix", "") + name).upper(): field
                  for cls in (BridgeSettings, OktaSettings) for name, field in cls.model_fields.items()}
        return {**shared, **{var: None for var in CONSOLE_SETTINGS}}
    main = importlib.import_module(f"{module}.main")
    out = {}
    for cls in vars(main).values():
        if isinstance(cls, type) and issubclass(cls, BaseSettings) and cls is not BaseSettings:
            prefix = cls.model_config.get("env_prefix", "")
            out.update({(prefix + name).upper(): field for name, field in cls.model_fields.items()})
    return out


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_variable_the_chart_sets_is_a_setting_and_every_required_one_is_set(name):
    for dep in objects(rendered(name), "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        module = container["args"][-1]
        settings = _settings_of(module)
        env = env_of(container)
        secret_files = {item["path"] for v in pod["volumes"] if v["name"] == "secrets"
                        for s in v["projected"]["sources"] for item in s["secret"].get("items", [])}
        for var in env:
            if var.startswith("OTEL_") or var in {"POD_NAME", "POD_NAMESPACE"} | _MERGED_ALONGSIDE:
                continue
            assert var in settings, f"{dep['metadata']['name']}: {var} is read by no setting of {module}"
        for var, field in settings.items():
            if field is not None and field.is_required():
                assert var in env or var in secret_files, f"{dep['metadata']['name']}: {var} is required"
        assert {"RABBITMQ_URL", "MONGODB_URL"} <= secret_files


def test_notes_tell_what_to_check_next():
    """NOTES.txt (rendered by a client-side dry-run install): the topology Job's log and its expected line, the
    pods' readiness, the metrics, each pool's partitions, the audit trail, and what is turned off."""
    out = subprocess.run([helm(), "install", "bridge", str(CHART), "-n", "okta-bridge", "--dry-run=client",
                          "-f", str(values_file("keda-off")), "--set", "dispatchers.default.replicas=2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n okta-bridge logs job/bridge-okta-bridge-topology" in notes
    assert '"topology applied: pool default (4 partitions)"' in notes  # what okta_bridge.topology prints
    assert "partitions show --pool default" in notes and "/audit?limit=20" in notes
    assert "KEDA is off" in notes and "NetworkPolicies are off" in notes and "No ServiceMonitor" in notes
    # the console: reached through a port-forward, tokens only while no OIDC app is given
    assert "port-forward svc/bridge-okta-bridge-console 8090" in notes and "http://localhost:8090" in notes
    assert "OIDC is off (console.oidc.clientId is empty)" in notes
    out = subprocess.run([helm(), "install", "bridge", str(CHART), "-n", "okta-bridge", "--dry-run=client",
                          "-f", str(values_file("console")), "--set", "keda.enabled=false"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "https://bridge-console.example.com/oidc/callback" in notes and "port-forward svc/bridge-okta-bridge-console" \
        not in notes
