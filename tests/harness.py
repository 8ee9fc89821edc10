"""Test harness: runs the real Pulumi program (`__main__.py`) against Pulumi's mocks.

`run_program` executes the program once, in a fresh `contextvars.Context` (Pulumi keeps its
settings, config and root stack in context variables, so every run is isolated from the others),
and returns every resource registration the engine would have received, with inputs, parent,
dependencies and provider, plus the stack outputs with their secret markers intact.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextvars
import functools
import json
import re
import runpy
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_in_stack

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

# The vendored charts (charts/, checked against their lock): the one source of chart files, shared with the renderer.
from tools import vendored  # noqa: E402

PROJECT = "confidential-vault"
SECRET_SIG = rpc._special_sig_key
SECRET_MARKER = rpc._special_secret_sig
FAKE_KUBELET_OBJECT_ID = "22222222-2222-2222-2222-222222222222"
FAKE_PUBLIC_IP = "20.31.42.53"
FAKE_PRINCIPAL_ID = "44444444-4444-4444-4444-444444444444"
FAKE_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
FAKE_TENANT_ID = "33333333-3333-3333-3333-333333333333"
FAKE_IDENTITY_CLIENT_ID = "55555555-5555-5555-5555-555555555555"
FAKE_IDENTITY_PRINCIPAL_ID = "66666666-6666-6666-6666-666666666666"
FAKE_KEY_VERSION = "0123456789abcdef0123456789abcdef"
FAKE_RANDOM_STRING = "q7x2k9m4"
FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: fake\n  user: {token: fake-kube-token}\n"


def fake_password(resource_name: str) -> str:
    """What a mocked `RandomPassword` returns: recognisable, so leak tests can search for it."""
    return f"generated-{resource_name}-Zq7"


# Azure's id shapes for the types whose ids other resources take apart or extend (subnets, zones, servers):
# type -> (provider path, input naming the resource).
ARM_ID_PATHS = {
    "azure-native:network:VirtualNetwork": ("Microsoft.Network/virtualNetworks", "virtualNetworkName"),
    "azure-native:privatedns:PrivateZone": ("Microsoft.Network/privateDnsZones", "privateZoneName"),
    "azure-native:dbforpostgresql:Server": ("Microsoft.DBforPostgreSQL/flexibleServers", "serverName"),
}


class FakeCloud(pulumi.runtime.Mocks):
    """Resource and invoke mocks: inputs echoed as outputs, plus what the clouds would compute."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        # A resource at an explicit API version (`azure-native:keyvault/v20260201:Vault`) computes what its default
        # token does.
        default_type = re.sub(r"/v\d{8}(?:preview)?:", ":", args.typ)
        azure_name = state.get("resourceName") or state.get("resourceGroupName") or args.name
        if args.typ == "azure-native:resources:ResourceGroup":
            state["name"] = state.get("resourceGroupName", args.name)
        elif args.typ == "azure-native:containerservice:ManagedCluster":
            state["name"] = state.get("resourceName", args.name)
            state["nodeResourceGroup"] = f"MC_{state['name']}"
            state["oidcIssuerProfile"] = {"issuerURL": "https://oidc.example/issuer"}
            state["identity"] = {**(state.get("identity") or {}), "principalId": FAKE_PRINCIPAL_ID}
            state["identityProfile"] = {
                "kubeletidentity": {"objectId": FAKE_KUBELET_OBJECT_ID, "clientId": "kubelet-client-id"}
            }
        elif args.typ == "azure-native:network:PublicIPAddress":
            state["ipAddress"] = FAKE_PUBLIC_IP
            state["name"] = state.get("publicIpAddressName", args.name)
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = fake_password(args.name)
        elif args.typ == "random:index/randomString:RandomString":
            state["result"] = FAKE_RANDOM_STRING[: int(state.get("length", len(FAKE_RANDOM_STRING)))]
        elif default_type == "azure-native:keyvault:Vault":
            state["name"] = state.get("vaultName", args.name)
            state["properties"] = {
                **(state.get("properties") or {}),
                "vaultUri": f"https://{state['name']}.vault.azure.net/",
            }
        elif default_type == "azure-native:keyvault:Key":
            state["name"] = state.get("keyName", args.name)
            state["keyUri"] = f"https://{state.get('vaultName')}.vault.azure.net/keys/{state['name']}"
            state["keyUriWithVersion"] = f"{state['keyUri']}/{FAKE_KEY_VERSION}"
        elif args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            state["name"] = state.get("resourceName", args.name)
            state.update(
                clientId=FAKE_IDENTITY_CLIENT_ID, principalId=FAKE_IDENTITY_PRINCIPAL_ID, tenantId=FAKE_TENANT_ID
            )
        elif args.typ.startswith("azure-native:"):
            state.setdefault("name", args.name)
        resource_id = (
            f"/subscriptions/00000000-0000-0000-0000-000000000000/fake/{args.typ.split(':')[-1]}/{azure_name}"
            if args.typ.startswith("azure-native:")
            else f"{args.name}-id"
        )
        if default_type in ("azure-native:keyvault:Vault", "azure-native:keyvault:Key"):
            # Role assignments are scoped by these ids: give them Azure's shape (the key's id extends its vault's).
            vault_id = (
                f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/{state.get('resourceGroupName')}"
                f"/providers/Microsoft.KeyVault/vaults/{state.get('vaultName')}"
            )
            resource_id = vault_id if default_type.endswith(":Vault") else f"{vault_id}/keys/{state['name']}"
        if args.typ in ARM_ID_PATHS:
            provider_path, name_input = ARM_ID_PATHS[args.typ]
            state["name"] = args.inputs.get(name_input, args.name)
            resource_id = (
                f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/{state.get('resourceGroupName')}"
                f"/providers/{provider_path}/{state['name']}"
            )
        if args.typ == "azure-native:dbforpostgresql:Server":
            state["fullyQualifiedDomainName"] = f"{state['name']}.postgres.database.azure.com"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            encoded = base64.b64encode(FAKE_KUBECONFIG.encode()).decode()
            return {"kubeconfigs": [{"name": "clusterUser", "value": encoded}]}, []
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": "11111111-1111-1111-1111-111111111111",
                "objectId": "22222222-2222-2222-2222-222222222222",
                "subscriptionId": FAKE_SUBSCRIPTION_ID,
                "tenantId": "33333333-3333-3333-3333-333333333333",
            }, []
        raise AssertionError(f"unexpected invoke {args.token}")


@dataclass
class Registration:
    """One `RegisterResource` request as the engine would have received it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    raw_inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    provider: str
    protect: bool
    ignore_changes: list[str]
    depends_on_types: set[str] = field(default_factory=set)
    retain_on_delete: bool = False


class RecordingMonitor(mocks.MockMonitor):
    """A MockMonitor that keeps every registration request and the stack outputs."""

    def __init__(self, cloud: pulumi.runtime.Mocks) -> None:
        super().__init__(cloud)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=reveal(rpc.deserialize_properties(request.object)),
                    raw_inputs=json_format.MessageToDict(request.object),
                    dependencies=list(request.dependencies),
                    property_dependencies={
                        key: list(value.urns) for key, value in request.propertyDependencies.items()
                    },
                    provider=request.provider,
                    protect=request.protect,
                    ignore_changes=list(request.ignoreChanges),
                    retain_on_delete=request.retainOnDelete,
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.stack_outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_MARKER


def reveal(value: Any) -> Any:
    """The plain value behind wire-format secret markers (recursively)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


def plaintext(value: Any) -> str:
    """Everything in `value` that is NOT under a secret marker, as one string to search for leaks."""
    if is_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(f"{key} {plaintext(item)}" for key, item in value.items())
    if isinstance(value, list):
        return " ".join(plaintext(item) for item in value)
    return str(value)


@dataclass
class ProgramRun:
    """What one run of the program registered and exported."""

    registrations: list[Registration]
    raw_outputs: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Any]:
        return reveal(self.raw_outputs)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Registration:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def plaintext(self) -> str:
        """Everything this run put outside secret markers (inputs of every resource and the outputs): leak checks."""
        return " ".join(plaintext(r.raw_inputs) for r in self.registrations) + " " + plaintext(self.raw_outputs)

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def types(self) -> set[str]:
        return {r.type for r in self.registrations}

    def depends_on(self, dependent: Registration, dependency: Registration) -> bool:
        """Whether `dependent` waits for `dependency` (explicitly or through an input)."""
        urns = set(dependent.dependencies)
        for dependency_urns in dependent.property_dependencies.values():
            urns.update(dependency_urns)
        return dependency.urn in urns


def stack_config(stack: str, directory: Path = PROJECT_ROOT) -> tuple[dict[str, Any], list[str]]:
    """Config of `Pulumi.<stack>.yaml` as the engine passes it: `secure:` values become dummy secrets."""
    document = yaml.safe_load((directory / f"Pulumi.{stack}.yaml").read_text()) or {}
    config: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        replaced, had_secret = _replace_secure(value, key)
        config[key] = replaced
        if had_secret:
            secret_keys.append(key)
    return config, secret_keys


def _replace_secure(value: Any, path: str) -> tuple[Any, bool]:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return f"dummy-secret-{path}", True
    if isinstance(value, dict):
        pairs = {key: _replace_secure(item, f"{path}.{key}") for key, item in value.items()}
        return {key: pair[0] for key, pair in pairs.items()}, any(pair[1] for pair in pairs.values())
    if isinstance(value, list):
        pairs_list = [_replace_secure(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return [pair[0] for pair in pairs_list], any(pair[1] for pair in pairs_list)
    return value, False


def encode_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config values as strings, the way the Pulumi engine hands them to a program."""
    encoded = {}
    for key, value in config.items():
        if isinstance(value, bool):
            encoded[key] = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            encoded[key] = json.dumps(value)
        else:
            encoded[key] = str(value)
    return encoded


def run_program(
    config: Mapping[str, Any],
    stack: str = "dev",
    secret_keys: list[str] | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Run `__main__.py` once under mocks, isolated in its own context; the program's exception propagates."""
    run, error = _run(config, stack, secret_keys, preview)
    if error is not None:
        raise error
    return run


def run_failing(
    config: Mapping[str, Any], stack: str = "dev", secret_keys: list[str] | None = None
) -> tuple[BaseException, ProgramRun]:
    """Run a program that must fail: its exception and everything it registered before failing."""
    run, error = _run(config, stack, secret_keys, preview=False)
    assert error is not None, "the program succeeded"
    return error, run


def run_function(program: Callable[[], None], stack: str = "dev", preview: bool = False) -> ProgramRun:
    """Run any function that creates resources (e.g. one component) under the same mocks and isolation."""
    run, error = contextvars.Context().run(_run_isolated, {}, stack, [], preview, program)
    if error is not None:
        raise error
    return run


def _run(
    config: Mapping[str, Any], stack: str, secret_keys: list[str] | None, preview: bool
) -> tuple[ProgramRun, BaseException | None]:
    return contextvars.Context().run(_run_isolated, dict(config), stack, secret_keys or [], preview, None)


def _run_main() -> None:
    runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__")


def _run_isolated(
    config: dict[str, Any],
    stack: str,
    secret_keys: list[str],
    preview: bool,
    program: Callable[[], None] | None,
) -> tuple[ProgramRun, BaseException | None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cloud = FakeCloud()
    monitor = RecordingMonitor(cloud)
    error: BaseException | None = None
    try:
        pulumi.runtime.set_mocks(cloud, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
        settings.ROOT.set(None)  # run_in_stack creates the root stack, as the CLI's entrypoint does
        pulumi.runtime.set_all_config(encode_config(config), secret_keys)
        loop.run_until_complete(run_in_stack(program or _run_main))
    except Exception as exception:
        error = exception
    finally:
        # A program that failed inside an apply leaves outputs and RPCs pending in Pulumi's settings; left there,
        # they break the next run with "Event loop is closed".
        settings._get_rpc_manager().clear()
        with settings.SETTINGS.lock:  # pyright: ignore[reportAttributeAccessIssue]
            settings.SETTINGS.outputs.clear()  # pyright: ignore[reportAttributeAccessIssue]
        loop.close()
        asyncio.set_event_loop(None)
    return ProgramRun(monitor.registrations, monitor.stack_outputs), error


def with_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a stack config with `section.path` keys replaced (None deletes)."""
    updated = json.loads(json.dumps(config))
    for dotted, value in overrides.items():
        top, *rest = dotted.split(".")
        key = f"{PROJECT}:{top}"
        if not rest:
            if value is None:
                updated.pop(key, None)
            else:
                updated[key] = value
            continue
        node = updated.setdefault(key, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(rest[-1], None)
        else:
            node[rest[-1]] = value
    return updated


STACKS = sorted(path.name.split(".")[1] for path in PROJECT_ROOT.glob("Pulumi.*.yaml"))


# --- upstream conformance ---------------------------------------------------------------------


def require_reference() -> Path:
    """The upstream chart files the conformance tests read, all from this checkout: the vendored archives (each
    checked against the lock's sha256 first) unpacked, as `charts/<chart>/<version>/chart/` for every vendored chart
    and every sub-chart bundled in one. A chart missing or altered is a failure, never a skip."""
    return _reference_view()


@functools.cache
def _reference_view() -> Path:
    view = Path(tempfile.mkdtemp(prefix="cv-reference-"))
    atexit.register(shutil.rmtree, view, True)
    for (chart, version), tree in vendored.chart_trees().items():
        link = view / "charts" / chart / version / "chart"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tree, target_is_directory=True)
    return view


@functools.cache
def _crd_schemas(reference: Path) -> dict[str, dict[str, Any]]:
    return vendored.crd_schemas_in(sorted((reference / "charts").glob("*/*/chart")))


def crd_schema(reference: Path, api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD as the charts in `reference` ship it (their `crds/` files)."""
    schemas = _crd_schemas(reference)
    key = f"{api_version}/{kind}"
    assert key in schemas, f"no vendored chart ships a CRD for {key}"
    return schemas[key]


def validate_custom_resource(reference: Path, resource: Mapping[str, Any]) -> None:
    """Validate a custom resource (apiVersion, kind, metadata, spec) against its CRD's OpenAPI schema."""
    schema = crd_schema(reference, resource["apiVersion"], resource["kind"])
    jsonschema.validate(dict(resource), _openapi_to_jsonschema(schema))


def strict_crd_schema(open_api_schema: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD's `openAPIV3Schema` as the strict JSON Schema `validate_custom_resource` applies (unknown fields fail)."""
    return _openapi_to_jsonschema(dict(open_api_schema))


def custom_resource_body(registration: Registration) -> dict[str, Any]:
    """A registered `CustomResource` as the object Kubernetes would receive (apiVersion, kind, metadata, spec…)."""
    return {key: value for key, value in registration.inputs.items() if key not in ("__defaults",)}


def _openapi_to_jsonschema(schema: Any) -> Any:
    """The CRD's OpenAPI schema as strict JSON Schema.

    The API server silently prunes unknown fields, so a typo would deploy as "nothing": here an object
    with declared `properties` rejects any other key unless the CRD preserves unknown fields.
    """
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    converted = {
        key: _openapi_to_jsonschema(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")
    }
    pattern = converted.get("pattern")
    if isinstance(pattern, str) and "(?i)" in pattern[1:]:
        # Go's RE2 takes inline flags anywhere (PrometheusRule: `^(?i)(abort|warn)?$`); Python only at the start.
        converted["pattern"] = "(?i)" + pattern.replace("(?i)", "", 1)
    closed = "properties" in schema and "additionalProperties" not in schema
    if closed and not schema.get("x-kubernetes-preserve-unknown-fields"):
        converted["additionalProperties"] = False
    return converted


def chart_values_file(reference: Path, chart: str, version: str) -> dict[str, Any]:
    return yaml.safe_load((reference / "charts" / chart / version / "chart" / "values.yaml").read_text()) or {}


def unknown_value_keys(values: Any, upstream: Any, path: str = "") -> Iterator[str]:
    """Dotted paths in `values` that the chart's own values.yaml does not have.

    Below an upstream empty map, list or null the chart accepts free-form content, so nothing is checked there.
    """
    if not isinstance(values, dict) or not isinstance(upstream, dict) or not upstream:
        return
    for key, value in values.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in upstream:
            yield child
        else:
            yield from unknown_value_keys(value, upstream[key], child)


def validate_chart_values(
    reference: Path, chart: str, version: str, values: Mapping[str, Any], allowed_extra: tuple[str, ...] = ()
) -> None:
    """Values may use only keys of the chart's values.yaml, and must pass its values.schema.json if it has one."""
    unknown = [
        key
        for key in unknown_value_keys(values, chart_values_file(reference, chart, version))
        if key not in allowed_extra
    ]
    assert not unknown, f"keys unknown to {chart} {version}: {unknown}"
    # Helm validates against the schema the chart ships, if it ships one; so does this.
    schema_file = reference / "charts" / chart / version / "chart" / "values.schema.json"
    if schema_file.is_file():
        schema = json.loads(schema_file.read_text())
        # Charts name their draft loosely (an https draft-07 URI; OpenBao's bare `http://json-schema.org/schema#`),
        # which jsonschema does not recognise: it would fall back to the newest draft with a deprecation warning.
        # Both were written for Helm 3's draft-7 validator, so validate with draft 7.
        if "draft-07" in schema.get("$schema", "") or schema.get("$schema") == "http://json-schema.org/schema#":
            jsonschema.Draft7Validator(schema).validate(dict(values))
        else:
            jsonschema.validate(dict(values), schema)
