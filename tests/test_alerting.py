"""Alert delivery: `monitoring.alerting` → Alertmanager's configuration and the Secret its receivers read.

The configuration is the one Helm really renders from the registered release (tools/render.py: the Secret
`alertmanager-<name>` the operator hands to the Alertmanager of that name), checked with the real `amtool`
(Debian package `prometheus-alertmanager`): `check-config`, and `config routes test` for where each kind of alert
goes. Debian's amtool is v0.25, older than the chart's Alertmanager (v0.34):
it does not know a webhook's `url_file` (v0.26) or `msteamsv2_configs` (v0.28). For amtool, a `url_file` is
replaced by the `url` read from its (dummy) file, and the Teams blocks are taken out and checked against the
fields of Alertmanager v0.34's `MSTeamsV2Config` instead (notify/msteamsv2/config.go at tag v0.34.0).
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from components.alerting import alertmanager_config, delivery_summary, receiver_secrets
from components.charts import KUBE_PROMETHEUS_STACK
from components.config.alerting import AlertingSettings
from harness import (
    PROJECT,
    ProgramRun,
    Registration,
    chart_values_file,
    is_secret,
    run_failing,
    run_program,
    stack_config,
    with_overrides,
)
from tools.render import render_release

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"

SMTP_PASSWORD = "smtp-pw-7Hq2xR"
CRITICAL_WEBHOOK = "https://events.example.org/hooks/critical-3Jx9"
CRITICAL_TEAMS = "https://prod-12.westeurope.logic.azure.com/workflows/teams-crit-4Kd8"
CRITICAL_SLACK = "https://hooks.slack.com/services/T000/B000/crit-5Lp1"
WARNING_SLACK = "https://hooks.slack.com/services/T000/B000/warn-6Mq2"
WARNING_TEAMS = "https://prod-12.westeurope.logic.azure.com/workflows/teams-warn-7Qe4"
DEAD_MANS_SWITCH = "https://hc-ping.com/dms-8Nr3"
SECRET_VALUES = {SMTP_PASSWORD, CRITICAL_WEBHOOK, CRITICAL_TEAMS, CRITICAL_SLACK, WARNING_SLACK, WARNING_TEAMS}
SECRET_VALUES |= {DEAD_MANS_SWITCH}

SMTP = {
    "host": "smtp.example.org",
    "port": 587,
    "from": "alerts@example.org",
    "username": "alerts@example.org",
    "password": SMTP_PASSWORD,
}
EVERY_RECEIVER = {
    "smtp": SMTP,
    "critical": {
        "email": ["oncall@example.org", "security@example.org"],
        "webhookUrl": CRITICAL_WEBHOOK,
        "teamsWebhookUrl": CRITICAL_TEAMS,
        "slackWebhookUrl": CRITICAL_SLACK,
        "repeatInterval": "30m",
    },
    "warning": {"slackWebhookUrl": WARNING_SLACK, "teamsWebhookUrl": WARNING_TEAMS},
    "deadMansSwitch": {"webhookUrl": DEAD_MANS_SWITCH, "interval": "2m"},
}
SECRET_CONFIG = [f"{PROJECT}:monitoring"]

# Alertmanager v0.34.0, notify/msteamsv2/config.go: MSTeamsV2Config with the inline NotifierConfig (send_resolved).
MSTEAMSV2_FIELDS = {"send_resolved", "http_config", "webhook_url", "webhook_url_file", "title", "text"}
# The first Alertmanager that reads all the fields the configuration uses (msteamsv2_configs, v0.28.0).
MIN_ALERTMANAGER = (0, 28, 0)


@pytest.fixture(scope="session")
def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool not found: install the Debian package prometheus-alertmanager (.ci/run does)"
    return path


@pytest.fixture(scope="module")
def every_receiver_run() -> ProgramRun:
    config = with_overrides(stack_config("dev")[0], {"monitoring.alerting": EVERY_RECEIVER})
    return run_program(config, secret_keys=SECRET_CONFIG)


def kps_values(run: ProgramRun) -> dict[str, Any]:
    return kps_release(run).inputs["values"]


def kps_release(run: ProgramRun) -> Registration:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == KUBE_PROMETHEUS_STACK.path)


def rendered_config(reference: Path, run: ProgramRun) -> dict[str, Any]:
    """Alertmanager's configuration as Helm renders it: `alertmanager.yaml` of the Secret `alertmanager-<name>`."""
    objects = render_release(kps_release(run).inputs)
    (alertmanager,) = [obj for obj in objects if obj["kind"] == "Alertmanager"]
    assert not alertmanager["spec"].get("configSecret"), "the operator would read another Secret"
    secret_name = f"alertmanager-{alertmanager['metadata']['name']}"
    (secret,) = [obj for obj in objects if obj["kind"] == "Secret" and obj["metadata"]["name"] == secret_name]
    return yaml.safe_load(base64.b64decode(secret["data"]["alertmanager.yaml"]))


def receivers_secret(run: ProgramRun) -> Registration:
    return run.one(SECRET, "alertmanager-receivers")


def file_fields(node: Any) -> Iterator[tuple[str, str]]:
    """Every `*_file` field in the configuration, with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str):
                yield key, value
            else:
                yield from file_fields(value)
    elif isinstance(node, list):
        for item in node:
            yield from file_fields(item)


def secrets_mount(reference: Path) -> str:
    """Where the operator mounts `alertmanagerSpec.secrets`, as the chart's Alertmanager CRD documents it."""
    crd = reference / "charts" / KUBE_PROMETHEUS_STACK.chart / KUBE_PROMETHEUS_STACK.version / "chart"
    text = (crd / "charts" / "crds" / "crds" / "crd-alertmanagers.yaml").read_text()
    match = re.search(r"The Secrets are mounted into `([^`<]+)<secret-name>`", text)
    assert match, "the Alertmanager CRD no longer documents where Secrets are mounted"
    return match.group(1).rstrip("/")


def for_amtool_0_25(config: dict[str, Any], files: Path, mount: str, contents: dict[str, str]) -> dict[str, Any]:
    """The configuration as Debian's amtool v0.25 can read it (see the module docstring), files under `files`."""
    checked = copy.deepcopy(config)
    for receiver in checked["receivers"]:
        receiver.pop("msteamsv2_configs", None)
        for webhook in receiver.get("webhook_configs", []):
            if "url_file" in webhook:
                path = webhook.pop("url_file")
                webhook["url"] = contents[path.removeprefix(f"{mount}/").split("/", 1)[1]]

    def relocate(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (str(files / value.removeprefix(f"{mount}/")) if key.endswith("_file") else relocate(value))
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [relocate(item) for item in node]
        return node

    return relocate(checked)


def write_for_amtool(tmp_path: Path, reference: Path, run: ProgramRun) -> Path:
    """The rendered configuration for amtool, with every secret file present (dummy contents)."""
    mount = secrets_mount(reference)
    contents: dict[str, str] = {}
    files = tmp_path / "secrets"
    for key, path in file_fields(rendered_config(reference, run)):
        relative = path.removeprefix(f"{mount}/")
        dummy = "dummy-password" if key == "smtp_auth_password_file" else f"https://hooks.example.org/{relative}"
        (files / relative).parent.mkdir(parents=True, exist_ok=True)
        (files / relative).write_text(dummy)
        contents[relative.split("/", 1)[1]] = dummy
    config_file = tmp_path / "alertmanager.yaml"
    config_file.write_text(yaml.safe_dump(for_amtool_0_25(rendered_config(reference, run), files, mount, contents)))
    return config_file


def check_config(amtool: str, config_file: Path) -> None:
    result = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def route_of(amtool: str, config_file: Path, labels: dict[str, str]) -> str:
    """The receiver(s) Alertmanager's routing tree picks for an alert with `labels` (amtool config routes test)."""
    command = [amtool, "config", "routes", "test", f"--config.file={config_file}"]
    result = subprocess.run(
        command + [f"{name}={value}" for name, value in labels.items()], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


# --- every receiver at once --------------------------------------------------------------------------


def test_every_secret_reaches_the_receivers_secret_and_nowhere_else(every_receiver_run: ProgramRun) -> None:
    run = every_receiver_run
    secret = receivers_secret(run)
    assert secret.inputs["metadata"]["namespace"] == "monitoring"
    data = secret.inputs["stringData"]
    assert set(data.values()) == SECRET_VALUES
    raw = secret.raw_inputs["stringData"]
    assert is_secret(raw) or all(is_secret(value) for value in raw.values())
    exposed = run.plaintext()
    leaked = [value for value in SECRET_VALUES if value in exposed]
    assert not leaked, f"secrets in plaintext inputs or outputs: {leaked}"
    # Nor in what the chart renders (its own Secrets included: they are base64 there, so decode them).
    rendered = render_release(kps_release(run).inputs)
    for obj in rendered:
        if obj["kind"] == "Secret":
            obj["data"] = {key: base64.b64decode(value).decode() for key, value in (obj.get("data") or {}).items()}
    text = json.dumps(rendered)
    assert not [value for value in SECRET_VALUES if value in text]


def test_alertmanager_reads_each_secret_from_the_mounted_secret(
    reference: Path, every_receiver_run: ProgramRun
) -> None:
    run = every_receiver_run
    secret = receivers_secret(run)
    name = secret.inputs["metadata"]["name"]
    assert kps_values(run)["alertmanager"]["alertmanagerSpec"]["secrets"] == [name]
    mount = secrets_mount(reference)
    paths = [path for _, path in file_fields(rendered_config(reference, run))]
    # Each file is a key of the mounted Secret, and each key of the Secret is read by something.
    assert sorted(paths) == sorted(f"{mount}/{name}/{key}" for key in secret.inputs["stringData"])
    by_file = {path: secret.inputs["stringData"][path.rsplit("/", 1)[1]] for path in paths}
    config = rendered_config(reference, run)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    critical, warning = receivers["critical"], receivers["warning"]
    assert by_file[config["global"]["smtp_auth_password_file"]] == SMTP_PASSWORD
    assert by_file[critical["webhook_configs"][0]["url_file"]] == CRITICAL_WEBHOOK
    assert by_file[critical["msteamsv2_configs"][0]["webhook_url_file"]] == CRITICAL_TEAMS
    assert by_file[critical["slack_configs"][0]["api_url_file"]] == CRITICAL_SLACK
    assert by_file[warning["slack_configs"][0]["api_url_file"]] == WARNING_SLACK
    assert by_file[warning["msteamsv2_configs"][0]["webhook_url_file"]] == WARNING_TEAMS
    switch = receivers["dead-mans-switch"]
    assert by_file[switch["webhook_configs"][0]["url_file"]] == DEAD_MANS_SWITCH
    assert critical["email_configs"] == [{"to": "oncall@example.org, security@example.org", "send_resolved": True}]
    assert config["global"]["smtp_smarthost"] == "smtp.example.org:587"
    assert config["global"]["smtp_auth_username"] == "alerts@example.org"
    assert config["global"]["smtp_from"] == "alerts@example.org"
    assert config["global"]["smtp_require_tls"] is True


def test_release_waits_for_the_receivers_secret(every_receiver_run: ProgramRun) -> None:
    run = every_receiver_run
    release = next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == KUBE_PROMETHEUS_STACK.path)
    assert run.depends_on(release, receivers_secret(run))


def test_rendered_configuration_passes_amtool(
    amtool: str, reference: Path, every_receiver_run: ProgramRun, tmp_path: Path
) -> None:
    check_config(amtool, write_for_amtool(tmp_path, reference, every_receiver_run))


def test_routes_by_severity_with_amtool(
    amtool: str, reference: Path, every_receiver_run: ProgramRun, tmp_path: Path
) -> None:
    config_file = write_for_amtool(tmp_path, reference, every_receiver_run)
    assert route_of(amtool, config_file, {"alertname": "OpenBaoSealed", "severity": "critical"}) == "critical"
    assert route_of(amtool, config_file, {"alertname": "CertificateExpiring", "severity": "warning"}) == "warning"
    assert route_of(amtool, config_file, {"alertname": "Watchdog", "severity": "none"}) == "dead-mans-switch"
    # The chart's info alerts and its InfoInhibitor are for the UI only.
    assert route_of(amtool, config_file, {"alertname": "CPUThrottlingHigh", "severity": "info"}) == "null"
    assert route_of(amtool, config_file, {"alertname": "InfoInhibitor", "severity": "none"}) == "null"


def test_grouping_repeat_and_dead_mans_switch_timing(reference: Path, every_receiver_run: ProgramRun) -> None:
    route = rendered_config(reference, every_receiver_run)["route"]
    assert route["group_by"] == ["alertname", "namespace"]
    assert (route["group_wait"], route["group_interval"]) == ("30s", "5m")
    by_receiver = {child["receiver"]: child for child in route["routes"]}
    assert by_receiver["critical"]["repeat_interval"] == "30m"  # configured
    assert by_receiver["warning"]["repeat_interval"] == "12h"  # README's default
    watchdog = by_receiver["dead-mans-switch"]
    assert watchdog["repeat_interval"] == "2m"
    # Alertmanager sends only at group_interval ticks: a longer tick would stretch the ping period.
    assert watchdog["group_interval"] == "1m"
    assert watchdog["group_wait"] == "0s"


def test_critical_inhibits_the_warning_of_the_same_alert(reference: Path, every_receiver_run: ProgramRun) -> None:
    (rule,) = rendered_config(reference, every_receiver_run)["inhibit_rules"]
    assert rule["source_matchers"] == ['severity = "critical"']
    assert rule["target_matchers"] == ['severity = "warning"']
    # The same alert about the same object: our certificate alert differs only in severity, per `cn`.
    assert {"alertname", "namespace", "cn"} <= set(rule["equal"])


def test_teams_uses_workflows_webhooks_as_alertmanager_0_34_defines_them(
    reference: Path, every_receiver_run: ProgramRun
) -> None:
    config = rendered_config(reference, every_receiver_run)
    teams = [block for receiver in config["receivers"] for block in receiver.get("msteamsv2_configs", [])]
    assert len(teams) == 2
    for block in teams:
        assert set(block) <= MSTEAMSV2_FIELDS, set(block) - MSTEAMSV2_FIELDS
        # UnmarshalYAML: exactly one of webhook_url and webhook_url_file.
        assert ("webhook_url" in block) != ("webhook_url_file" in block)
        assert "webhook_url" not in block  # the URL is a secret
    assert not [receiver for receiver in config["receivers"] if "msteams_configs" in receiver]


def test_the_charts_alertmanager_reads_these_fields(reference: Path) -> None:
    chart = chart_values_file(reference, KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version)
    tag = chart["alertmanager"]["alertmanagerSpec"]["image"]["tag"]
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    assert match, tag
    assert tuple(int(part) for part in match.groups()) >= MIN_ALERTMANAGER, tag


def test_alert_delivery_output_names_every_path(every_receiver_run: ProgramRun) -> None:
    delivery = every_receiver_run.outputs["alertDelivery"]
    assert delivery["critical"] == (
        "e-mail to oncall@example.org, security@example.org; webhook; Microsoft Teams; Slack"
    )
    assert delivery["warning"] == "Microsoft Teams; Slack"
    assert delivery["watchdog"] == "dead man's switch pinged every 2m"


# --- one receiver at a time --------------------------------------------------------------------------

SINGLE_RECEIVERS = {
    "email": ({"smtp": SMTP, "critical": {"email": ["oncall@example.org"]}}, "email_configs", {SMTP_PASSWORD}),
    "webhook": ({"critical": {"webhookUrl": CRITICAL_WEBHOOK}}, "webhook_configs", {CRITICAL_WEBHOOK}),
    "teams": ({"critical": {"teamsWebhookUrl": CRITICAL_TEAMS}}, "msteamsv2_configs", {CRITICAL_TEAMS}),
    "slack": ({"critical": {"slackWebhookUrl": CRITICAL_SLACK}}, "slack_configs", {CRITICAL_SLACK}),
}


@pytest.mark.parametrize("kind", SINGLE_RECEIVERS)
def test_each_receiver_type_alone(kind: str) -> None:
    """Each integration on its own renders its block and needs its secret, nothing else. (The program run with every
    receiver above shows where the blocks and secrets go, and amtool checks them.)"""
    alerting, integration, secrets = SINGLE_RECEIVERS[kind]
    settings = AlertingSettings.model_validate(alerting)
    receivers = {receiver["name"]: receiver for receiver in alertmanager_config(settings)["receivers"]}
    assert set(receivers) == {"null", "critical"}
    assert set(receivers["critical"]) == {"name", integration}
    assert {value.get_secret_value() for value in receiver_secrets(settings).values()} == secrets
    # Warnings have nowhere to go, and the summary says so.
    assert delivery_summary(settings)["warning"].startswith("NOBODY")


def test_email_without_password_needs_no_secret(dev_config: dict[str, Any]) -> None:
    relay = {"host": "relay.internal.example.org", "port": 25, "from": "alerts@example.org", "requireTls": False}
    alerting = {"smtp": relay, "warning": {"email": ["ops@example.org"]}}
    run = run_program(with_overrides(dev_config, {"monitoring.alerting": alerting}))
    assert not [r for r in run.of_type(SECRET) if r.name == "alertmanager-receivers"]
    assert kps_values(run)["alertmanager"]["alertmanagerSpec"]["secrets"] == []
    config = kps_values(run)["alertmanager"]["config"]
    assert "smtp_auth_password_file" not in config["global"]
    assert "smtp_auth_username" not in config["global"]
    assert config["global"]["smtp_smarthost"] == "relay.internal.example.org:25"
    assert config["global"]["smtp_require_tls"] is False


# --- nothing configured -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_without_receivers_the_stack_says_nobody_is_notified(stack_runs: dict[str, ProgramRun], stack: str) -> None:
    run = stack_runs[stack]
    delivery = run.outputs["alertDelivery"]
    assert delivery["critical"].startswith("NOBODY is notified")
    assert delivery["warning"].startswith("NOBODY is notified")
    assert delivery["watchdog"].startswith("NOT WATCHED")
    assert not [r for r in run.of_type(SECRET) if r.name == "alertmanager-receivers"]
    assert kps_values(run)["alertmanager"]["alertmanagerSpec"]["secrets"] == []


def test_without_receivers_the_configuration_is_valid_and_silent(
    amtool: str, reference: Path, stack_runs: dict[str, ProgramRun], tmp_path: Path
) -> None:
    config_file = write_for_amtool(tmp_path, reference, stack_runs["dev"])
    check_config(amtool, config_file)
    assert route_of(amtool, config_file, {"alertname": "OpenBaoSealed", "severity": "critical"}) == "null"
    assert route_of(amtool, config_file, {"alertname": "Watchdog", "severity": "none"}) == "null"


# --- configuration errors -----------------------------------------------------------------------------


def test_email_needs_a_mail_server(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"monitoring.alerting": {"critical": {"email": ["oncall@example.org"]}}})
    error, run = run_failing(config)
    assert (
        f"{PROJECT}:monitoring.alerting.smtp: is required: monitoring.alerting.critical.email send e-mail "
        "(allowed: host, port, from, username, password)"
    ) in str(error)
    assert not run.registrations


def test_mail_server_without_email_receivers_is_refused(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"monitoring.alerting": {"smtp": SMTP}})
    error, _ = run_failing(config, secret_keys=SECRET_CONFIG)
    assert f"{PROJECT}:monitoring.alerting.smtp: is set but no receiver sends e-mail" in str(error)
    assert SMTP_PASSWORD not in str(error)


def test_smtp_password_needs_a_user(dev_config: dict[str, Any]) -> None:
    smtp = {key: value for key, value in SMTP.items() if key != "username"}
    alerting = {"smtp": smtp, "critical": {"email": ["oncall@example.org"]}}
    error, _ = run_failing(with_overrides(dev_config, {"monitoring.alerting": alerting}), secret_keys=SECRET_CONFIG)
    assert f"{PROJECT}:monitoring.alerting.smtp.password: needs a user name" in str(error)
    assert "allowed: set monitoring.alerting.smtp.username too" in str(error)
    assert SMTP_PASSWORD not in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("critical.webhookUrl", CRITICAL_WEBHOOK),
        ("critical.teamsWebhookUrl", CRITICAL_TEAMS),
        ("warning.slackWebhookUrl", WARNING_SLACK),
        ("deadMansSwitch.webhookUrl", DEAD_MANS_SWITCH),
    ],
)
def test_webhook_urls_in_plaintext_are_refused(dev_config: dict[str, Any], key: str, value: str) -> None:
    section, field = key.split(".")
    error, run = run_failing(with_overrides(dev_config, {"monitoring.alerting": {section: {field: value}}}))
    assert f"{PROJECT}:monitoring.alerting.{key}: is a secret but stored in plaintext" in str(error)
    assert value not in str(error)
    assert not run.registrations


def test_invalid_values_are_named_with_their_keys(dev_config: dict[str, Any]) -> None:
    alerting = {
        "critical": {"email": ["not-an-address"], "repeatInterval": "soon"},
        "groupBy": ["alert-name"],
        "smtp": {"host": "smtp.example.org", "from": "alerts@example.org", "port": 70000},
    }
    error, _ = run_failing(with_overrides(dev_config, {"monitoring.alerting": alerting}))
    message = str(error)
    prefix = f"{PROJECT}:monitoring.alerting"
    assert f"{prefix}.critical.email[0]: is not an e-mail address (got 'not-an-address'; allowed: name@domain)" in (
        message
    )
    assert f"{prefix}.critical.repeatInterval: is not a duration (got 'soon'" in message
    assert f"{prefix}.groupBy[0]: is not a Prometheus label name (got 'alert-name'" in message
    assert f"{prefix}.smtp.port:" in message
    assert "70000" in message


def test_alerting_while_monitoring_is_disabled_is_a_config_error(dev_config: dict[str, Any]) -> None:
    alerting = {"critical": {"slackWebhookUrl": CRITICAL_SLACK}}
    config = with_overrides(dev_config, {"monitoring": {"enabled": False, "alerting": alerting}})
    error, run = run_failing(config, secret_keys=SECRET_CONFIG)
    assert f"{PROJECT}:monitoring.alerting: only applies when monitoring is enabled" in str(error)
    assert CRITICAL_SLACK not in str(error)
    assert not run.registrations


# --- a live Alertmanager on loopback --------------------------------------------------------------------


class _Hooks(http.server.BaseHTTPRequestHandler):
    """Records every notification POSTed to it, by path."""

    received: ClassVar[dict[str, list[dict[str, Any]]]] = defaultdict(list)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received[self.path].append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_live_alertmanager_pages_critical_mutes_its_warning_and_pings_the_switch(
    dev_config: dict[str, Any], reference: Path, tmp_path: Path
) -> None:
    """Debian's Alertmanager (v0.25) runs the program's configuration on 127.0.0.1, its receivers pointed at a
    local HTTP server: what arrives where is the routing, grouping and inhibition a real Alertmanager applies."""
    binary = shutil.which("prometheus-alertmanager")
    assert binary, "prometheus-alertmanager not found: install the Debian package (.ci/run does)"
    hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    _Hooks.received.clear()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hooks.server_address[1]}"
    alerting = {
        "critical": {"webhookUrl": f"{base}/critical"},
        "warning": {"slackWebhookUrl": f"{base}/warning"},
        "deadMansSwitch": {"webhookUrl": f"{base}/switch", "interval": "1m"},
        "groupWait": "1s",
    }
    run = run_program(with_overrides(dev_config, {"monitoring.alerting": alerting}), secret_keys=SECRET_CONFIG)
    mount = secrets_mount(reference)
    secret = receivers_secret(run)
    contents = dict(secret.inputs["stringData"])
    files = tmp_path / "secrets"
    for key, value in contents.items():
        (files / secret.inputs["metadata"]["name"]).mkdir(parents=True, exist_ok=True)
        (files / secret.inputs["metadata"]["name"] / key).write_text(value)
    config = for_amtool_0_25(kps_values(run)["alertmanager"]["config"], files, mount, contents)
    (tmp_path / "alertmanager.yaml").write_text(yaml.safe_dump(config))
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yaml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        certificate = "CertificateExpiring"
        alerts = [
            *(
                {"labels": {"alertname": certificate, "severity": severity, "cn": cn}, "annotations": {"summary": cn}}
                for severity, cn in [
                    ("critical", "vault.example.org"),
                    ("warning", "vault.example.org"),  # muted by the critical one
                    ("warning", "grafana.example.org"),
                ]
            ),
            {"labels": {"alertname": "Watchdog", "severity": "none"}},
            {"labels": {"alertname": "CPUThrottlingHigh", "severity": "info", "namespace": "kube-system"}},
        ]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(request, timeout=2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "Alertmanager did not start"
                time.sleep(0.2)
        while {"/critical", "/warning", "/switch"} - set(_Hooks.received) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # anything that would arrive late, e.g. a second warning notification
    finally:
        process.terminate()
        process.wait(timeout=10)
        hooks.shutdown()
    received = dict(_Hooks.received)
    assert set(received) == {"/critical", "/warning", "/switch"}, received.keys()
    ((critical,),) = [[alert["labels"]["cn"] for alert in body["alerts"]] for body in received["/critical"]]
    assert critical == "vault.example.org"
    # One Slack message for the group, naming one firing alert: the muted warning is not part of it.
    (attachment,) = [attachment for body in received["/warning"] for attachment in body["attachments"]]
    assert attachment["title"].startswith("[FIRING:1] CertificateExpiring"), attachment["title"]
    assert "*WARNING* grafana.example.org" in attachment["text"]
    assert "vault.example.org" not in attachment["text"]
    assert [alert["labels"]["alertname"] for body in received["/switch"] for alert in body["alerts"]] == ["Watchdog"]
