"""What `kubectl apply -k manifests/` would install, checked offline: it renders, it is valid, its parts fit together.

The original project shipped manifests whose RBAC bound a role that did not exist, whose NetworkPolicy opened
the wrong port and whose kustomizations contained `${...}` that kustomize never expands. Each test here
guards one such seam: names that must agree across files, ports that must match, flags the operator parses.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubeapi.api_calls import Grant, required_grants
from schemas.crds import apply_defaults
from schemas.labels import GROUP_LABEL
from schemas.validation import validate_group, validate_node
from sim.seed import plan_homelab
from tests.support.rbac import installation, operator_grants
from webhooks.admission import ALL_NAMESPACES, AdmissionRules, KnownMachine, review
from webhooks.certs import service_dns_names

ROOT: Final = Path(__file__).resolve().parents[3]
MANIFESTS: Final = ROOT / "manifests"
COMPONENTS: Final = MANIFESTS / "components"
EXAMPLES: Final = ROOT / "examples"
KUBECTL: Final = shutil.which("kubectl")
KUBERNETES_VERSION: Final = "1.32"
NAMESPACE: Final = "homelab-autoscaler"
LEADER_LABEL: Final = "infra.homecluster.dev/leader"
NOT_BUILT_IN_GROUPS: Final = frozenset({"infra.homecluster.dev", "monitoring.coreos.com", "cert-manager.io"})

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (for `kubectl kustomize`) is not installed")

Document = dict[str, Any]


# --- rendering --------------------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[Document]:
    """The objects `kubectl kustomize` renders; fails on any warning (deprecated fields print one)."""
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"kustomize warned: {result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def write_overlay(directory: Path, body: str) -> Path:
    """An overlay in `directory` whose `BASE` stands for the relative path to manifests/ (kustomize wants it)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(body.replace("BASE", os.path.relpath(MANIFESTS, directory)))
    return directory


def with_components(directory: Path, *components: str) -> Path:
    listed = "".join(f"  - BASE/components/{name}\n" for name in components)
    return write_overlay(
        directory,
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - BASE\n"
        f"components:\n{listed}",
    )


@pytest.fixture(scope="module")
def base() -> list[Document]:
    return kustomize(MANIFESTS)


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> list[Document]:
    """The base with every component, as a user enabling all of them would install it."""
    overlay = with_components(tmp_path_factory.mktemp("everything"), *sorted(p.name for p in COMPONENTS.iterdir()))
    return kustomize(overlay)


def find(documents: list[Document], kind: str, name: str | None = None) -> Document:
    matches = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def operator_deployment(documents: list[Document]) -> Document:
    return find(documents, "Deployment", "homelab-autoscaler")


def operator_container(documents: list[Document]) -> Document:
    containers: list[Document] = operator_deployment(documents)["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def arguments(container: Document) -> dict[str, str]:
    """`--name=value` arguments as a mapping (`--flag` alone maps to "")."""
    parsed = {}
    for argument in container["args"]:
        if argument.startswith("--"):
            name, _, value = argument.partition("=")
            parsed[name] = value
    return parsed


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- the base renders and is valid ------------------------------------------------------------------------


def test_the_base_installs_exactly_the_operator(base: list[Document]) -> None:
    assert sorted((d["kind"], d["metadata"]["name"]) for d in base) == sorted(
        [
            ("Namespace", NAMESPACE),
            ("CustomResourceDefinition", "groups.infra.homecluster.dev"),
            ("CustomResourceDefinition", "nodes.infra.homecluster.dev"),
            ("ServiceAccount", "homelab-autoscaler"),
            ("ClusterRole", "homelab-autoscaler"),
            ("ClusterRoleBinding", "homelab-autoscaler"),
            ("Role", "homelab-autoscaler"),
            ("RoleBinding", "homelab-autoscaler"),
            ("Deployment", "homelab-autoscaler"),
            ("Service", "homelab-autoscaler-grpc"),
            ("Service", "homelab-autoscaler-metrics"),
            ("Service", "homelab-autoscaler-webhook"),
            ("ValidatingWebhookConfiguration", "homelab-autoscaler"),
            ("PodDisruptionBudget", "homelab-autoscaler"),
            ("NetworkPolicy", "homelab-autoscaler"),
        ]
    )
    namespaced = [d for d in base if "namespace" in d["metadata"]]
    assert {d["metadata"]["namespace"] for d in namespaced} == {NAMESPACE}


@pytest.mark.parametrize("rendering", ["base", "everything"])
def test_every_built_in_object_passes_strict_kubernetes_validation(
    rendering: str, request: pytest.FixtureRequest
) -> None:
    documents: list[Document] = request.getfixturevalue(rendering)
    problems = []
    for document in documents:
        if document["apiVersion"].split("/")[0] in NOT_BUILT_IN_GROUPS:
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            problems.append(f"{document['kind']} {document['metadata']['name']}: {error}")
    assert problems == []


def _source_files() -> Iterator[Path]:
    for folder in (MANIFESTS, EXAMPLES):
        yield from (path for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("path", list(_source_files()), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_shell_placeholders_that_kustomize_would_not_expand(path: Path) -> None:
    # Only `$(VAR)` in container args is expanded (by the kubelet, from the container's env); `${VAR}` never is.
    assert "${" not in path.read_text(), f"{path.name} contains a ${{...}} placeholder"


# --- the parts fit together ------------------------------------------------------------------------------


def test_services_route_to_named_container_ports_and_only_grpc_and_webhook_to_the_leader(
    base: list[Document],
) -> None:
    pod_labels = operator_deployment(base)["spec"]["template"]["metadata"]["labels"]
    port_names = {port["name"]: port["containerPort"] for port in operator_container(base)["ports"]}
    leader_only = {}
    for service in (d for d in base if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert selects(selector, {**pod_labels, LEADER_LABEL: "true"}), service["metadata"]["name"]
        leader_only[service["metadata"]["name"]] = selector.get(LEADER_LABEL) == "true"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']} targets {port['targetPort']}"
    assert leader_only == {
        "homelab-autoscaler-grpc": True,
        "homelab-autoscaler-metrics": False,
        "homelab-autoscaler-webhook": True,
    }
    # The leader label is set at run time, never baked into the template (both replicas would get traffic).
    assert LEADER_LABEL not in pod_labels


@pytest.mark.parametrize(
    ("flag", "port_name"),
    [
        pytest.param("--grpc-address", "grpc", id="grpc"),
        pytest.param("--metrics-address", "metrics", id="metrics"),
        pytest.param("--webhook-address", "webhook", id="webhook"),
    ],
)
def test_the_operator_listens_where_its_container_ports_say(base: list[Document], flag: str, port_name: str) -> None:
    container = operator_container(base)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert arguments(container)[flag].rpartition(":")[2] == str(ports[port_name])


def test_operator_arguments_are_exactly_the_documented_flags(base: list[Document]) -> None:
    container = operator_container(base)
    assert container["args"][0] == "run"
    assert arguments(container) == {
        "--namespace": "$(POD_NAMESPACE)",
        "--watch-namespace": "homelab",
        "--grpc-address": "0.0.0.0:50051",
        "--metrics-address": "0.0.0.0:8080",
        "--webhook-address": "0.0.0.0:9443",
        "--webhook-cert-dir": "/tmp/webhook-certs",
        "--webhook-secret": "homelab-autoscaler-webhook-tls",
        "--webhook-config": "homelab-autoscaler",
        "--leader-elect": "",
        "--leader-election-lease": "homelab-autoscaler",
        "--log-format": "json",
    }
    downward = {env["name"]: env["valueFrom"]["fieldRef"]["fieldPath"] for env in container["env"]}
    assert downward == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}


def test_the_run_command_accepts_the_deployment_arguments(base: list[Document]) -> None:
    pytest.importorskip("homelab_autoscaler.commands.run", reason="the run command is not written yet")
    from homelab_autoscaler.cli import build_parser

    argv = [argument.replace("$(POD_NAMESPACE)", NAMESPACE) for argument in operator_container(base)["args"]]
    build_parser().parse_args(argv)


def test_names_the_operator_is_told_match_the_objects(base: list[Document]) -> None:
    flags = arguments(operator_container(base))
    webhook = find(base, "ValidatingWebhookConfiguration")
    role = find(base, "Role")
    secret_rule = next(rule for rule in role["rules"] if "secrets" in rule["resources"] and "resourceNames" in rule)
    lease_rule = next(rule for rule in role["rules"] if "leases" in rule["resources"] and "resourceNames" in rule)
    cluster_role = find(base, "ClusterRole")
    webhook_rule = next(r for r in cluster_role["rules"] if "validatingwebhookconfigurations" in r["resources"])
    assert flags["--webhook-config"] == webhook["metadata"]["name"] == webhook_rule["resourceNames"][0]
    assert secret_rule["resourceNames"] == [flags["--webhook-secret"]]
    assert lease_rule["resourceNames"] == [flags["--leader-election-lease"]]


def test_the_webhook_configuration(base: list[Document]) -> None:
    (webhook,) = find(base, "ValidatingWebhookConfiguration")["webhooks"]
    service = find(base, "Service", "homelab-autoscaler-webhook")
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] == 5
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert "caBundle" not in webhook["clientConfig"]  # the operator fills it; kubectl apply must not clear it
    reference = webhook["clientConfig"]["service"]
    assert (reference["name"], reference["namespace"], reference["path"]) == (
        service["metadata"]["name"],
        service["metadata"]["namespace"],
        "/validate",
    )
    assert reference["port"] in [port["port"] for port in service["spec"]["ports"]]
    assert webhook["rules"] == [
        {
            "apiGroups": ["infra.homecluster.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["groups", "nodes"],
            "scope": "Namespaced",
        }
    ]


def test_the_operator_pod_runs_locked_down(base: list[Document]) -> None:
    pod = operator_deployment(base)["spec"]["template"]["spec"]
    container = operator_container(base)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert arguments(container)["--webhook-cert-dir"].startswith("/tmp/")  # the only writable place
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}


def test_probes_use_the_metrics_port(base: list[Document]) -> None:
    container = operator_container(base)
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes["livenessProbe"] == {"path": "/healthz", "port": "metrics"}
    assert probes["readinessProbe"] == {"path": "/readyz", "port": "metrics"}


def test_replicas_spread_and_disruptions_leave_one(base: list[Document]) -> None:
    deployment = operator_deployment(base)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = find(base, "PodDisruptionBudget")
    assert deployment["spec"]["replicas"] == 2
    assert budget["spec"]["minAvailable"] == 1
    assert selects(budget["spec"]["selector"]["matchLabels"], pod_labels)
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert selects(spread["labelSelector"]["matchLabels"], pod_labels)


def test_network_policy_admits_ca_for_grpc_anyone_for_the_webhook_and_monitoring_for_metrics(
    base: list[Document],
) -> None:
    policy = find(base, "NetworkPolicy")["spec"]
    container_ports = {port["name"] for port in operator_container(base)["ports"]}
    assert selects(
        policy["podSelector"]["matchLabels"], operator_deployment(base)["spec"]["template"]["metadata"]["labels"]
    )
    assert policy["policyTypes"] == ["Ingress"]  # egress (the API server) unrestricted
    rules = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["ingress"]}
    assert set(rules) == container_ports
    assert rules["webhook"] is None  # the API server is not a pod: any source
    assert rules["grpc"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "cluster-autoscaler"}}}
    ]
    assert rules["metrics"] is not None


# --- RBAC ----------------------------------------------------------------------------------------------------


# The grants are derived from kubeapi/api_calls.py, the table of every request the operator makes;
# tests/integration/security/test_security_rbac.py proves that table against the requests really sent.


def _granted(base: list[Document]) -> set[Grant]:
    return operator_grants(base, installation(base))


def _needed(base: list[Document]) -> frozenset[Grant]:
    return required_grants(installation(base).object_names)


def test_rbac_grants_every_permission_the_api_call_table_needs(base: list[Document]) -> None:
    missing = sorted(grant.describe() for grant in _needed(base) - _granted(base))
    assert missing == [], "the operator would be refused (403):\n" + "\n".join(missing)


def test_rbac_grants_nothing_the_api_call_table_does_not_need(base: list[Document]) -> None:
    extra = sorted(grant.describe() for grant in _granted(base) - _needed(base))
    assert extra == [], "granted but needed by no API call:\n" + "\n".join(extra)


def test_the_own_namespace_role_lives_in_the_operator_namespace(base: list[Document]) -> None:
    role = find(base, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE == installation(base).operator_namespace


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_bindings_name_existing_roles_and_the_operator_account(base: list[Document], kind: str) -> None:
    binding = find(base, kind)
    role_kind = binding["roleRef"]["kind"]
    assert find(base, role_kind, binding["roleRef"]["name"])  # the original bound a role that did not exist
    account = find(base, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    assert operator_deployment(base)["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_every_rbac_rule_carries_a_comment_explaining_it() -> None:
    lines = (MANIFESTS / "21-rbac.yaml").read_text().splitlines()
    unexplained = [
        number + 1
        for number, line in enumerate(lines)
        if line.strip().startswith("- apiGroups:") and not lines[number - 1].strip().startswith("#")
    ]
    assert unexplained == [], f"rules without a comment above them, at lines {unexplained}"


# --- overlays ------------------------------------------------------------------------------------------------


NAMESPACE_OVERLAY: Final = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - BASE
patches:
  - target: {kind: Namespace, name: homelab-autoscaler}
    patch: |-
      - op: replace
        path: /metadata/name
        value: autoscaling
transformers:
  - namespace.yaml
"""
NAMESPACE_TRANSFORMER: Final = """\
apiVersion: builtin
kind: NamespaceTransformer
metadata:
  name: namespace
  namespace: autoscaling
setRoleBindingSubjects: allServiceAccounts
fieldSpecs:
  - path: metadata/namespace
    create: true
  - path: webhooks/clientConfig/service/namespace
    kind: ValidatingWebhookConfiguration
"""


def test_the_documented_namespace_overlay_moves_every_reference(tmp_path: Path) -> None:
    overlay = write_overlay(tmp_path / "overlay", NAMESPACE_OVERLAY)
    (overlay / "namespace.yaml").write_text(NAMESPACE_TRANSFORMER)
    documents = kustomize(overlay)
    rendered = yaml.safe_dump_all(documents)
    assert f"namespace: {NAMESPACE}\n" not in rendered
    assert find(documents, "Namespace")["metadata"]["name"] == "autoscaling"
    assert find(documents, "ClusterRoleBinding")["subjects"][0]["namespace"] == "autoscaling"
    (webhook,) = find(documents, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["clientConfig"]["service"]["namespace"] == "autoscaling"
    install_guide = (ROOT / "docs" / "operations" / "install.md").read_text()
    assert NAMESPACE_TRANSFORMER in install_guide, "install.md must show the overlay this test checks"


def test_an_overlay_can_pin_another_image(tmp_path: Path) -> None:
    overlay = write_overlay(
        tmp_path / "overlay",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - BASE\nimages:\n"
        "  - name: ghcr.io/homecluster-dev/homelab-autoscaler\n    newTag: 0.1.1-rc1\n",
    )
    image = operator_container(kustomize(overlay))["image"]
    assert image == "ghcr.io/homecluster-dev/homelab-autoscaler:0.1.1-rc1"


# --- components ---------------------------------------------------------------------------------------------


def test_every_component_renders_on_its_own(tmp_path: Path) -> None:
    for component in sorted(path.name for path in COMPONENTS.iterdir()):
        documents = kustomize(with_components(tmp_path / component, component))
        assert len(documents) > 15, component


def test_the_grafana_component_generates_a_config_map_the_grafana_sidecar_picks_up(tmp_path: Path) -> None:
    documents = kustomize(with_components(tmp_path / "grafana", "grafana"))

    maps = [document for document in documents if document["kind"] == "ConfigMap"]
    (dashboard_map,) = [m for m in maps if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    assert dashboard_map["metadata"]["name"] == "homelab-autoscaler-dashboard"  # no hash suffix: no stale copies
    dashboard_file = COMPONENTS / "grafana" / "dashboard.json"
    assert json.loads(dashboard_map["data"]["dashboard.json"]) == json.loads(dashboard_file.read_text(encoding="utf-8"))


def test_cluster_autoscaler_component_reaches_our_grpc_service(everything: list[Document]) -> None:
    service = find(everything, "Service", "homelab-autoscaler-grpc")
    ca_pod = find(everything, "Deployment", "cluster-autoscaler")["spec"]["template"]
    (container,) = ca_pod["spec"]["containers"]
    flags = arguments(container)
    assert container["image"] == "registry.k8s.io/autoscaling/cluster-autoscaler:v1.32.0"
    assert flags["--cloud-provider"] == "externalgrpc"
    (volume,) = ca_pod["spec"]["volumes"]
    config_map = find(everything, "ConfigMap", volume["configMap"]["name"])
    (mount,) = container["volumeMounts"]
    assert config_map["metadata"]["name"].startswith("cluster-autoscaler-cloud-config")  # generated, hashed
    mounted_file = flags["--cloud-config"].removeprefix(mount["mountPath"] + "/")
    cloud_config = yaml.safe_load(config_map["data"][mounted_file])
    host, _, port = cloud_config["address"].rpartition(":")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert cloud_config["grpc_timeout"] == "10s"
    # Our NetworkPolicy only lets CA pods in by this label.
    assert ca_pod["metadata"]["labels"]["app.kubernetes.io/name"] == "cluster-autoscaler"
    binding = find(everything, "ClusterRoleBinding", "cluster-autoscaler")
    assert binding["subjects"][0]["name"] == ca_pod["spec"]["serviceAccountName"]


def test_cluster_autoscaler_readme_explains_every_flag_it_sets(everything: list[Document]) -> None:
    (container,) = find(everything, "Deployment", "cluster-autoscaler")["spec"]["template"]["spec"]["containers"]
    readme = (COMPONENTS / "cluster-autoscaler" / "README.md").read_text()
    unexplained = [flag for flag in arguments(container) if flag not in readme and flag != "--v"]
    assert unexplained == []


def test_cert_manager_component_issues_the_secret_the_operator_loads(everything: list[Document]) -> None:
    certificate = find(everything, "Certificate")
    webhook_service = find(everything, "Service", "homelab-autoscaler-webhook")
    flags = arguments(operator_container(everything))
    configuration = find(everything, "ValidatingWebhookConfiguration")
    assert certificate["spec"]["secretName"] == flags["--webhook-secret"]
    assert flags["--webhook-cert-source"] == "cert-manager"
    assert tuple(certificate["spec"]["dnsNames"]) == service_dns_names(
        webhook_service["metadata"]["name"], webhook_service["metadata"]["namespace"]
    )
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    )
    issuer = find(everything, certificate["spec"]["issuerRef"]["kind"], certificate["spec"]["issuerRef"]["name"])
    assert issuer["metadata"]["namespace"] == certificate["metadata"]["namespace"]


def test_native_power_component_grants_only_get_by_name_on_the_secrets_it_lists(everything: list[Document]) -> None:
    role = find(everything, "Role", "homelab-autoscaler-power-secrets")
    for rule in role["rules"]:
        assert rule["verbs"] == ["get"], "never list or watch the machines' Secrets"
        assert rule["resourceNames"], "every rule names its objects"
        assert rule["resources"] in (["secrets"], ["configmaps"])
    binding = find(everything, "RoleBinding", "homelab-autoscaler-power-secrets")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] != NAMESPACE
    account = find(everything, "ServiceAccount", "homelab-autoscaler")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]
    }


def test_service_monitor_scrapes_the_metrics_service(everything: list[Document]) -> None:
    monitor = find(everything, "ServiceMonitor")
    service = find(everything, "Service", "homelab-autoscaler-metrics")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["selector"]["matchLabels"] != {}
    other_services = [d for d in everything if d["kind"] == "Service" and d is not service]
    assert not any(selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"]) for s in other_services)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"


# --- examples and seeded resources -----------------------------------------------------------------------


class _CustomResources:
    """Checks a Group/Node dict the way the API server and our webhook would."""

    def __init__(self) -> None:
        self.schemas = {}
        for crd in yaml.safe_load_all((MANIFESTS / "crds" / "groups.infra.homecluster.dev.yaml").read_text()):
            self.schemas["Group"] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for crd in yaml.safe_load_all((MANIFESTS / "crds" / "nodes.infra.homecluster.dev.yaml").read_text()):
            self.schemas["Node"] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def problems(self, resource: Document) -> list[str]:
        schema = self.schemas[resource["kind"]]
        defaulted = apply_defaults(resource, schema)
        found = [
            f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
            for error in jsonschema.Draft4Validator(schema).iter_errors(defaulted)
        ]
        rules = validate_group if resource["kind"] == "Group" else validate_node
        found += [str(error) for error in rules(resource)]
        return found


@pytest.fixture(scope="module")
def custom_resources() -> _CustomResources:
    return _CustomResources()


def _example_files() -> list[Path]:
    """Every example, those of a topic's folder (examples/native-power/) too."""
    return sorted(EXAMPLES.rglob("*.yaml"))


def _example_id(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def _load(path: Path) -> list[Document]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


@pytest.mark.parametrize("path", _example_files(), ids=_example_id)
def test_examples_validate_against_the_crds_and_the_rules(path: Path, custom_resources: _CustomResources) -> None:
    documents = _load(path)
    resources = [d for d in documents if d["apiVersion"].startswith("infra.homecluster.dev/")]
    assert {d["kind"] for d in resources} == {"Group", "Node"}, "each example shows a Group and its Nodes"
    for resource in resources:
        assert custom_resources.problems(resource) == [], f"{resource['kind']} {resource['metadata']['name']}"
    for document in documents:
        if document not in resources:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


class _ExampleCluster:
    """An AdmissionLookup that knows what the same example file creates, in file order."""

    def __init__(self) -> None:
        self.groups: set[tuple[str, str]] = set()
        self.machines: list[KnownMachine] = []

    def group_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.groups

    def nodes(self, namespace: str) -> list[KnownMachine]:
        return [m for m in self.machines if namespace == ALL_NAMESPACES or m.namespace == namespace]

    def kubernetes_node_exists(self, name: str) -> bool:
        return False  # fresh install: every machine is still off

    def admit(self, resource: Document) -> dict[str, Any]:
        metadata = resource["metadata"]
        request = {
            "uid": "example",
            "kind": {"group": "infra.homecluster.dev", "version": "v1alpha1", "kind": resource["kind"]},
            "operation": "CREATE",
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "object": resource,
        }
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
        answer: dict[str, Any] = review(body.encode(), AdmissionRules(self))["response"]
        if answer["allowed"]:
            if resource["kind"] == "Group":
                self.groups.add((metadata["namespace"], metadata["name"]))
            else:
                spec = resource["spec"]
                self.machines.append(
                    KnownMachine(
                        metadata["name"],
                        spec.get("kubernetesNodeName", metadata["name"]),
                        spec.get("providerID"),
                        spec.get("powerPolicy", "Auto"),
                        metadata["labels"].get(GROUP_LABEL),
                        metadata["namespace"],
                    )
                )
        return answer


@pytest.mark.parametrize("path", _example_files(), ids=_example_id)
def test_examples_pass_the_webhook_when_applied_in_file_order(path: Path) -> None:
    cluster = _ExampleCluster()
    for resource in _load(path):
        if resource["apiVersion"].startswith("infra.homecluster.dev/"):
            answer = cluster.admit(resource)
            assert answer["allowed"], answer.get("status", {}).get("message")


def test_seeded_homelab_resources_validate(custom_resources: _CustomResources) -> None:
    plan = plan_homelab(groups=3, machines=7)
    for resource in plan.groups + plan.nodes:
        assert custom_resources.problems(resource) == [], f"{resource['kind']} {resource['metadata']['name']}"


def test_the_examples_checked_include_the_native_power_ones() -> None:
    assert {"native-power/ipmi.yaml", "native-power/redfish.yaml", "native-power/wake-on-lan-ssh.yaml"} <= {
        _example_id(path) for path in _example_files()
    }


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        pytest.param(
            {"startupJob": {"image": "wol"}, "shutdownJob": {"image": "ssh"}}, "not both", id="jobs-and-power"
        ),
        pytest.param({"power": {"wakeOnLan": {"macAddress": "aa:bb:cc:dd:ee:zz"}}}, "macAddress", id="bad-mac"),
        pytest.param({"power": {"ipmi": {"host": "10.0.0.21"}}}, "credentials", id="ipmi-without-credentials"),
    ],
)
def test_the_validators_catch_a_broken_native_power_example(
    custom_resources: _CustomResources, change: dict[str, Any], complaint: str
) -> None:
    node = next(d for d in _load(EXAMPLES / "native-power" / "ipmi.yaml") if d["kind"] == "Node")
    broken = {**node, "spec": {**node["spec"], **change}}
    problems = custom_resources.problems(broken)
    assert any(complaint in problem for problem in problems), problems


def test_the_validators_catch_a_broken_example(custom_resources: _CustomResources) -> None:
    # The checks above must be able to fail: a typo and a missing image are both found.
    node = next(d for d in _load(EXAMPLES / "ipmi.yaml") if d["kind"] == "Node")
    broken = {**node, "spec": {**node["spec"], "powerPolicy": "on", "startupJob": {"imagee": "x"}}}
    problems = custom_resources.problems(broken)
    assert any("powerPolicy" in problem for problem in problems)
    assert any("image" in problem for problem in problems)


# --- the image ------------------------------------------------------------------------------------------------


def _packages() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = config["options.packages.find"]["include"].split()
    return [pattern.rstrip("*") for pattern in patterns]


def test_the_dockerfile_builds_every_package_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for package in _packages():
        assert f"COPY {package}/ {package}/" in dockerfile, f"{package} is not copied into the build"
        assert package not in ignored
    for needed in ("setup.py", "setup.cfg", "README.md"):
        assert needed in dockerfile
        assert needed not in ignored
    stages = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert len(stages) == 2, "a build stage and a runtime stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, flags=re.MULTILINE)
    final_stage = dockerfile.split("\nFROM ")[-1]
    assert "USER 65532:65532" in final_stage
    assert "COPY --from" not in final_stage  # wheels come in through a bind mount, never a layer
    assert 'ENTRYPOINT ["homelab-autoscaler"]' in final_stage
    assert 'CMD ["run"]' in final_stage
    # The Deployment runs the same user the image declares.
    deployment = yaml.safe_load((MANIFESTS / "30-deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


@pytest.mark.parametrize("path", _example_files(), ids=_example_id)
def test_example_instructions_create_the_namespace_before_a_secret_in_it(path: Path) -> None:
    header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    steps = [line for line in header if "kubectl create namespace homelab" in line or "create secret" in line]
    assert "kubectl create namespace homelab" in steps[0], "the Secret's namespace does not exist yet at that step"
    assert any("kubectl -n homelab create secret" in line for line in steps[1:])


def test_the_install_page_lists_every_optional_component() -> None:
    page = (ROOT / "docs" / "operations" / "install.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`") for line in page.splitlines() if line.startswith("| `")}
    shipped = {path.name for path in (ROOT / "manifests" / "components").iterdir() if path.is_dir()}
    assert shipped <= rows, f"components missing from docs/operations/install.md: {sorted(shipped - rows)}"
