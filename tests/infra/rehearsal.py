"""Machinery of the deploy rehearsal (tests/infra/test_deploy_rehearsal.py): the stack as its
Pulumi program declares it, local stand-ins for what AWS provides, and each ECS task and Lambda
function run exactly as its declaration says.

Taken from the declarations unchanged, as plain data read from the resources the program
registers (:func:`declare`):

- every ECS task definition's container: its image (the repository says which image that is:
  the Dockerfile target or the Bento the deploy builds into it, :data:`IMAGES`), its command, its
  port, the names and values of its environment, and its injected secrets;
- every Lambda function's handler (module path) and environment;
- the Secrets Manager secrets the stack creates (by name, empty, as the stack creates them), the
  RDS-managed master secret, the EventBridge rules, the training-task parameter.

Local instead of AWS, mapped by value (:meth:`Local.localize`), so that a renamed or dropped
variable arrives renamed or missing and the component fails as it would in AWS:

- RDS: the suite's PostgreSQL, one database per rehearsal, with TLS on (the declared
  ``sslmode=require`` stands) and every role on that database held to a SCRAM password
  (pg_hba.conf), the master user's included. The endpoint in a declared URL and the Lambdas'
  ``PRICEBOT_DB_HOST`` become the local ones. The Lambdas' ``PRICEBOT_DB_PORT`` and
  ``PRICEBOT_DB_NAME`` are the only values mapped by their name, because their values ("5432",
  "pricebot") are not unique strings.
- Secrets Manager, EventBridge, SQS, CloudWatch: a moto server (``AWS_ENDPOINT_URL``, fake
  credentials in place of the task and function roles'); each declared secret's ARN becomes the
  moto secret created under the declared name.
- The MLflow server: the suite's. Binance REST: the simulated exchange. Binance Vision: a local
  HTTP server serving the exchange's own candles as daily and monthly archives.
- X-Ray: there is no daemon, so the functions run with ``POWERTOOLS_TRACE_DISABLED=true``.
- Network namespaces: a server listens on a free local port instead of its container port
  (the declared container port is checked against the port the image listens on).

Who logged in: the server logs every connection (``log_connections``); :class:`Logins` reads the
role, database, method and TLS of those made to the rehearsal's database while a step ran.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
import yaml
from psycopg import sql

from infra.config import StackSettings
from pricebot_local.localdb import LocalPostgres
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REGION = "eu-west-1"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
FUNCTION = "aws:lambda/function:Function"
SECRET = "aws:secretsmanager/secret:Secret"
RULE = "aws:cloudwatch/eventRule:EventRule"
PARAMETER = "aws:ssm/parameter:Parameter"
DATABASE = "aws:rds/instance:Instance"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
SERVICE = "aws:ecs/service:Service"
MARKER = "# deploy rehearsal"


class RehearsalError(Exception):
    """A task or function did not do what its step needs, as a deploy would have failed."""


# --- the stack as declared ----------------------------------------------------------------------
@dataclass(frozen=True)
class Container:
    """One ECS task definition's container, as ECS receives it."""

    key: str  # the container name: service, monitoring, migrate, bootstrap, training, score,
    # predict
    family: str
    image: str
    command: tuple[str, ...] | None
    environment: dict[str, str]
    secrets: dict[str, str]  # variable -> secret ARN, injected by ECS at start
    port: int | None


@dataclass(frozen=True)
class Function:
    """One Lambda function, as Lambda receives it."""

    key: str  # ingest, transform
    name: str
    handler: str
    environment: dict[str, str]
    memory_mb: int


@dataclass(frozen=True)
class DeclaredSecret:
    name: str
    description: str
    arn: str  # as the program knows it (the mocks' ARN)


@dataclass(frozen=True)
class Declared:
    """Everything the rehearsal runs or creates, read from the program's registered resources."""

    name: str  # <project>-<stack>
    tasks: dict[str, Container]
    functions: dict[str, Function]
    secrets: tuple[DeclaredSecret, ...]
    master_secret_arn: str
    master_username: str
    database: tuple[str, str, str]  # address, port, database name
    tracking_uri: str
    repositories: dict[str, str]  # storage key (service, monitoring, training) -> URL
    rules: dict[str, dict[str, Any]]  # rule name -> its inputs
    training_task: dict[str, Any]  # the SSM parameter the retrain workflow reads
    health_checks: dict[str, str]  # container of a load-balanced service -> its health path
    monitoring_path: str  # where the load balancer serves the page (/monitor/)
    settings: StackSettings

    def task(self, key: str, **changes: Any) -> Declared:
        """A copy with one task's container changed (for the negative cases)."""
        return replace(self, tasks={**self.tasks, key: replace(self.tasks[key], **changes)})

    def function(self, key: str, **changes: Any) -> Declared:
        functions = {**self.functions, key: replace(self.functions[key], **changes)}
        return replace(self, functions=functions)

    def without_secret(self, name: str) -> Declared:
        kept = tuple(s for s in self.secrets if s.name != name)
        assert len(kept) == len(self.secrets) - 1, f"no declared secret {name}"
        return replace(self, secrets=kept)

    def rule(self, detail_type: str) -> dict[str, Any]:
        """The inputs of the rule whose event pattern takes ``detail_type``."""
        [found] = [
            r for r in self.rules.values()
            if detail_type in json.loads(r.get("eventPattern") or "{}").get("detail-type", [])
        ]  # fmt: skip
        return found


def declare(settings: StackSettings) -> Declared:
    """Run the Pulumi program under mocks and read back what it declared."""
    from tests.infra.conftest import build_stack

    stack = build_stack(settings)
    tasks = {}
    for resource in stack.of_type(TASK):
        [container] = json.loads(resource.inputs["containerDefinitions"])
        ports = container.get("portMappings") or [{}]
        tasks[container["name"]] = Container(
            key=container["name"],
            family=resource.inputs["family"],
            image=container["image"],
            command=tuple(container["command"]) if "command" in container else None,
            environment={e["name"]: e["value"] for e in container.get("environment", [])},
            secrets={s["name"]: s["valueFrom"] for s in container.get("secrets", [])},
            port=ports[0].get("containerPort"),
        )
    functions = {}
    for resource in stack.of_type(FUNCTION):
        key = resource.inputs["name"].removeprefix(f"{settings.name}-")
        functions[key] = Function(
            key=key,
            name=resource.inputs["name"],
            handler=resource.inputs["handler"],
            environment=dict(resource.inputs["environment"]["variables"]),
            memory_mb=int(resource.inputs["memorySize"]),
        )
    [rds] = stack.of_type(DATABASE)
    [parameter] = [
        p for p in stack.of_type(PARAMETER) if p.inputs["name"].endswith("/training-task")
    ]
    address, port = stack.outputs["database_endpoint"].rsplit(":", 1)
    groups = {g.outputs["arn"]: g.inputs for g in stack.of_type(TARGET_GROUP)}
    health_checks = {
        balanced["containerName"]: groups[balanced["targetGroupArn"]]["healthCheck"]["path"]
        for service in stack.of_type(SERVICE)
        for balanced in service.inputs.get("loadBalancers", [])
    }
    return Declared(
        name=settings.name,
        tasks=tasks,
        functions=functions,
        secrets=tuple(
            DeclaredSecret(s.inputs["name"], s.inputs.get("description", ""), s.outputs["arn"])
            for s in stack.of_type(SECRET)
        ),
        master_secret_arn=rds.outputs["masterUserSecrets"][0]["secretArn"],
        master_username=rds.inputs["username"],
        database=(address, port, rds.inputs["dbName"]),
        tracking_uri=stack.outputs["mlflow_url"],
        repositories=dict(stack.outputs["repository_urls"]),
        rules={r.inputs["name"]: r.inputs for r in stack.of_type(RULE)},
        training_task=json.loads(parameter.inputs["value"]),
        health_checks=health_checks,
        monitoring_path=urlparse(stack.outputs["monitoring_url"]).path,
        settings=settings,
    )


# --- what runs in each image --------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """What a container of an image runs: its entrypoint and default command, its environment,
    the port it listens on, and (for the Bento) the service and the files it carries."""

    source: str  # "Dockerfile target job", "Bento pricebot_service/bentofile.yaml"
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    environment: dict[str, str]
    port: int | None
    service: str | None = None  # the Bento's service (module:Class)
    include: tuple[str, ...] = ()  # the Bento's source files


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_image(target: str, path: Path = REPO / "Dockerfile") -> Image:
    """ENTRYPOINT, CMD, ENV and EXPOSE of a Dockerfile target, through the stages it builds on."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in _instructions(path.read_text()):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else parts[0]
            current = []
            stages[name] = (parts[0], current)
        elif current is not None:
            current.append((word, rest))
    if target not in stages:
        raise RehearsalError(f"the Dockerfile has no target {target!r}")
    chain, name = [], target
    while name in stages:
        chain.insert(0, stages[name][1])
        name = stages[name][0]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    environment: dict[str, str] = {}
    port = None
    for instructions in chain:
        for word, rest in instructions:
            if word == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    environment[key] = value
            elif word == "ENTRYPOINT":
                entrypoint, cmd = tuple(json.loads(rest)), ()
            elif word == "CMD":
                cmd = tuple(json.loads(rest))
            elif word == "EXPOSE":
                port = int(rest.split("/")[0])
    return Image(f"Dockerfile target {target}", entrypoint, cmd, environment, port)


def bento_image(path: Path = REPO / "pricebot_service" / "bentofile.yaml") -> Image:
    """What ``bentoml containerize`` makes of the bentofile: ``bentoml serve <service>`` on
    BentoML's port 3000, with the bentofile's environment and its included files."""
    spec = yaml.safe_load(path.read_text())
    environment = {e["name"]: str(e["value"]) for e in spec.get("envs", []) if "value" in e}
    return Image(
        f"Bento {path.relative_to(REPO)}",
        entrypoint=("bentoml", "serve"),
        cmd=(spec["service"],),
        environment=environment,
        port=3000,
        service=spec["service"],
        include=tuple(spec.get("include", [])),
    )


#: What the deploy builds into each repository (.github/workflows/deploy.yml: the Bento into
#: `service`, `docker build --target job` into `training`, `--target monitoring` into
#: `monitoring`).
IMAGES = {
    "service": partial(bento_image),
    "training": partial(dockerfile_image, "job"),
    "monitoring": partial(dockerfile_image, "monitoring"),
}


def image_of(declared: Declared, container: Container) -> Image:
    """The image a container names, judged by its repository and its tag."""
    key = container.key
    repository, _, tag = container.image.rpartition(":")
    found = [name for name, url in declared.repositories.items() if url == repository]
    if not found or found[0] not in IMAGES:
        raise RehearsalError(
            f"task {key}: its image {container.image} is from no repository the deploy builds "
            f"({', '.join(declared.repositories.values())})"
        )
    wanted = {
        "service": declared.settings.service_image_tag,
        "monitoring": declared.settings.monitoring_image_tag,
        "training": declared.settings.training_image_tag,
    }[found[0]]
    if tag != wanted:
        raise RehearsalError(f"task {key}: runs the tag {tag!r}, the deploy pushed {wanted!r}")
    image = IMAGES[found[0]]()
    if container.port is not None and container.port != image.port:
        listens = f"listens on {image.port}" if image.port else "exposes no port"
        raise RehearsalError(
            f"task {key}: the task maps container port {container.port}, but its image "
            f"({image.source}) {listens}"
        )
    return image


# --- the local stand-ins ------------------------------------------------------------------------
def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, so the server can require TLS as RDS does."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert, private = directory / "server.crt", directory / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    if os.geteuid() == 0:  # the server runs as postgres (pricebot_local.localdb)
        for path in (directory, cert, private):
            shutil.chown(path, "postgres", "postgres")
    return cert, private


class Cluster:
    """The suite's PostgreSQL made to behave like RDS for the rehearsal's databases: TLS on,
    SCRAM passwords required there, the master user given a password, connections logged.

    Everything is undone by :meth:`restore`; other tests' databases keep trusting local logins.
    """

    def __init__(self, postgres: LocalPostgres, master: str) -> None:
        self.postgres = postgres
        self.master = master
        self.master_password = uuid.uuid4().hex
        self.hba = postgres.data_dir / "pg_hba.conf"
        self._original_hba = self.hba.read_text()
        self.databases: list[str] = []
        # Beside the data directory: the server's user can reach it (pricebot_local.localdb).
        cert, key = self_signed_certificate(postgres.data_dir.parent / "tls")
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            settings = {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key),
                        "log_connections": "on"}  # fmt: skip
            for setting, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(master), sql.Literal(self.master_password)
                )
            )
        self._reload()

    def create_database(self) -> str:
        """A new empty database owned by the master user, reachable only with TLS and a password."""
        name = f"rehearsal_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{self.master}"')
        self.databases.append(name)
        self._write_hba()
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.remove(name)
        self._write_hba()

    def _write_hba(self) -> None:
        rules = "".join(
            f"hostssl {name} all 127.0.0.1/32 scram-sha-256  {MARKER}\n"
            f"host    {name} all 127.0.0.1/32 reject  {MARKER}\n"
            for name in self.databases
        )
        self.hba.write_text(rules + self._original_hba)
        self._reload()

    def _reload(self) -> None:
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            [(errors,)] = conn.execute(
                "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
            ).fetchall()
        assert errors == 0, "pg_hba.conf has rules the server cannot read"
        time.sleep(0.2)  # the postmaster reloads asynchronously

    def admin_url(self, database: str) -> str:
        """The harness's own way in: the master user, its password, over TLS."""
        return (
            f"postgresql://{self.master}:{self.master_password}@127.0.0.1:{self.postgres.port}/"
            f"{database}?sslmode=require"
        )

    def drop_roles(self, names: list[str]) -> None:
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')

    def restore(self) -> None:
        for name in list(self.databases):
            self.drop_database(name)
        self.hba.write_text(self._original_hba)
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            for setting in ("ssl", "ssl_cert_file", "ssl_key_file", "log_connections"):
                conn.execute(f"ALTER SYSTEM RESET {setting}")
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(self.master)))
        self._reload()


@dataclass(frozen=True)
class Login:
    """One connection the server accepted to the rehearsal's database."""

    user: str
    method: str  # the pg_hba method that authenticated it (scram-sha-256)
    tls: bool


class Logins:
    """Reads the server log for the connections made to one database while a block ran."""

    _authenticated = re.compile(r"\[(\d+)\] LOG:  connection authenticated: .*method=(\S+)")
    _authorized = re.compile(r"\[(\d+)\] LOG:  connection authorized: user=(\S+) database=(\S+)")

    def __init__(self, log_file: Path, database: str) -> None:
        self.log_file = log_file
        self.database = database

    @contextmanager
    def during(self) -> Iterator[list[Login]]:
        seen: list[Login] = []
        start = self.log_file.stat().st_size
        try:
            yield seen
        finally:
            time.sleep(0.3)  # the server writes its log asynchronously
            seen.extend(self._read(start))

    def _read(self, start: int) -> list[Login]:
        with self.log_file.open("rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
        methods: dict[str, str] = {}
        found = []
        for line in text.splitlines():
            if match := self._authenticated.search(line):
                methods[match[1]] = match[2]
            elif (match := self._authorized.search(line)) and match[3] == self.database:
                found.append(Login(match[2], methods.pop(match[1], "trust"), "SSL enabled" in line))
        return found


class Moto:
    """A moto server standing in for Secrets Manager, EventBridge, SQS and CloudWatch."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=2)
                break
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)

    @property
    def environment(self) -> dict[str, str]:
        """What a task or function role's credentials and AWS's endpoints become locally."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "rehearsal",
            "AWS_SECRET_ACCESS_KEY": "rehearsal",
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION,
            aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal",
        )  # fmt: skip

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log.close()


class VisionServer:
    """Binance Vision's layout over HTTP (``data/spot/{monthly,daily}/klines/SYMBOL/1m/``),
    naming the market its files come from as the simulated exchange does."""

    def __init__(self, root: Path, market: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def end_headers(self) -> None:
                self.send_header("X-Pricebot-Market", market)
                super().end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, exchange_url: str, symbol: str, first: dt.date, last: dt.date) -> int:
        """The exchange's candles of ``first``..``last`` as daily archives, and as a monthly one
        for each whole month among them: what Binance publishes. Returns the files written."""
        from pricebot.archive import write_archive

        base = self.root / "data" / "spot"
        rows_by_day: dict[dt.date, list[list[Any]]] = {}
        start_ms = int(dt.datetime.combine(first, dt.time(), dt.UTC).timestamp() * 1000)
        end_ms = int(dt.datetime.combine(last, dt.time(23, 59), dt.UTC).timestamp() * 1000)
        with httpx.Client(base_url=exchange_url, timeout=30) as http:
            while start_ms <= end_ms:
                page = http.get(
                    "/api/v3/klines",
                    params={"symbol": symbol, "interval": "1m", "startTime": start_ms,
                            "endTime": end_ms, "limit": 1000},
                ).json()  # fmt: skip
                if not page:
                    break
                for row in page:
                    day = dt.datetime.fromtimestamp(row[0] / 1000, dt.UTC).date()
                    rows_by_day.setdefault(day, []).append(row)
                start_ms = page[-1][0] + 60_000
        written = 0
        for day, rows in sorted(rows_by_day.items()):
            directory = base / "daily" / "klines" / symbol / "1m"
            write_archive(directory, symbol, day, rows, period="daily")
            written += 1
        months = sorted({day.replace(day=1) for day in rows_by_day})
        for month in months:
            days = [d for d in rows_by_day if d.replace(day=1) == month]
            following = (month + dt.timedelta(days=32)).replace(day=1)
            if len(days) == (following - month).days:
                rows = [row for d in sorted(days) for row in rows_by_day[d]]
                write_archive(base / "monthly" / "klines" / symbol / "1m", symbol, month, rows)
                written += 1
        return written

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@dataclass
class Local:
    """One rehearsal's world: its database, its AWS, and where each declared value points."""

    declared: Declared
    cluster: Cluster
    database: str
    moto: Moto
    tracking_uri: str
    exchange_url: str
    vision_url: str
    workdir: Path
    secret_arns: dict[str, str] = field(default_factory=dict)  # declared ARN -> moto ARN
    events_queue_url: str = ""

    @property
    def logins(self) -> Logins:
        return Logins(self.cluster.postgres.log_file, self.database)

    def create_aws(self) -> None:
        """The secrets as the stack creates them (empty), the master secret as RDS creates it,
        and a queue receiving what the transform function's rule routes to it."""
        secrets = self.moto.client("secretsmanager")
        for secret in self.declared.secrets:
            arn = secrets.create_secret(Name=secret.name, Description=secret.description)["ARN"]
            self.secret_arns[secret.arn] = arn
        master = secrets.create_secret(
            Name=f"rds!db-{uuid.uuid4()}",
            Description="RDS-managed master user secret (the rehearsal's stand-in)",
            SecretString=json.dumps(
                {"username": self.declared.master_username,
                 "password": self.cluster.master_password}
            ),
        )  # fmt: skip
        self.secret_arns[self.declared.master_secret_arn] = master["ARN"]
        sqs = self.moto.client("sqs")
        self.events_queue_url = sqs.create_queue(QueueName="transform-deliveries")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.events_queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        rule = self.declared.rule("KlinesIngested")
        events = self.moto.client("events")
        events.put_rule(Name=rule["name"], EventPattern=rule["eventPattern"])
        events.put_targets(Rule=rule["name"], Targets=[{"Id": "transform", "Arn": queue_arn}])

    def delivered_events(self) -> list[dict[str, Any]]:
        """What EventBridge delivered to the transform function's rule, as the function gets it."""
        sqs = self.moto.client("sqs")
        answer = sqs.receive_message(QueueUrl=self.events_queue_url, MaxNumberOfMessages=10)
        for message in answer.get("Messages", []):
            sqs.delete_message(QueueUrl=self.events_queue_url,
                               ReceiptHandle=message["ReceiptHandle"])  # fmt: skip
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    def localize(self, name: str, value: str) -> str:
        """A declared value as it points here (see the module docstring)."""
        address, port, database = self.declared.database
        local_port = str(self.cluster.postgres.port)
        if name == "PRICEBOT_DB_PORT" and value == port:
            return local_port
        if name == "PRICEBOT_DB_NAME" and value == database:
            return self.database
        if value == address:
            return "127.0.0.1"
        settings = self.declared.settings
        for declared, local in (
            (f"{address}:{port}/{database}", f"127.0.0.1:{local_port}/{self.database}"),
            (self.declared.tracking_uri, self.tracking_uri),
            (settings.binance_url, self.exchange_url),
            (settings.vision_url, self.vision_url),
            *self.secret_arns.items(),
        ):
            value = value.replace(declared, local)
        return value

    def secret_value(self, arn: str) -> str:
        """A secret's current value, read as ECS reads an injected secret at task start."""
        from botocore.exceptions import ClientError

        try:
            answer = self.moto.client("secretsmanager").get_secret_value(
                SecretId=self.localize("", arn)
            )
        except ClientError as exc:
            raise RehearsalError(f"ECS cannot inject the secret {arn}: {exc}") from None
        return answer["SecretString"]

    def home(self, key: str) -> Path:
        """A fresh home and working directory, as the image's WORKDIR (no .env, no checkout)."""
        home = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.workdir))
        return home

    def container_environment(self, container: Container, image: Image, home: Path) -> dict:
        """The environment ECS would give the container: the image's, then the task's (mapped
        to here), then the injected secrets, plus the local stand-ins for the role and AWS."""
        environment = {
            "HOME": str(home),
            "LANG": "C.UTF-8",
            **{k: v.replace("/opt/venv/bin", str(VENV_BIN)) for k, v in image.environment.items()},
            **{k: self.localize(k, v) for k, v in container.environment.items()},
            **{k: self.secret_value(arn) for k, arn in container.secrets.items()},
            **self.moto.environment,
        }
        environment["PATH"] = environment.get("PATH", "").replace("$PATH", "/usr/bin:/bin")
        if not environment["PATH"]:
            environment["PATH"] = f"{VENV_BIN}:/usr/bin:/bin"
        return environment


# --- running what is declared -------------------------------------------------------------------
@dataclass
class Ran:
    """A finished task or function: its command, what it printed, whom it logged in as."""

    argv: list[str]
    output: str
    logins: list[Login]
    result: Any = None


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_task(
    local: Local, key: str, *, command: list[str] | None = None, timeout: float = 900
) -> Ran:
    """Run one ECS task to its end, as ECS would: the image's entrypoint, the task's command
    (``command`` stands for a RunTask override, for the tasks that declare none)."""
    container = local.declared.tasks.get(key)
    if container is None:
        raise RehearsalError(f"the stack declares no task {key!r}")
    image = image_of(local.declared, container)
    words = command if command is not None else container.command
    argv = [*image.entrypoint, *(words if words is not None else image.cmd)]
    home = local.home(key)
    environment = local.container_environment(container, image, home)
    executable = shutil.which(argv[0], path=environment["PATH"])
    if executable is None:
        raise RehearsalError(f"{key}: {argv[0]!r} is not on the image's PATH")
    with local.logins.during() as logins:
        done = subprocess.run(
            [executable, *argv[1:]], env=environment, cwd=home, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
    output = done.stdout + done.stderr
    (home / "output.log").write_text(output)
    if done.returncode != 0:
        raise RehearsalError(
            f"task {key}: `{' '.join(argv)}` exited {done.returncode}:\n{_tail(output)}"
        )
    return Ran(argv, output, logins)


_LAMBDA_RUNTIME = textwrap.dedent(
    """
    import importlib, json, os, sys
    handler, event_file, result_file = sys.argv[1:4]
    module, _, name = handler.rpartition(".")
    function = getattr(importlib.import_module(module), name)

    class Context:
        function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        invoked_function_arn = "arn:aws:lambda:%s:123456789012:function:%s" % (
            os.environ["AWS_REGION"], function_name)
        aws_request_id = "rehearsal"

    with open(event_file) as f:
        result = function(json.load(f), Context())
    with open(result_file, "w") as f:
        json.dump(result, f, default=str)
    """
)


def call_function(local: Local, key: str, event: dict[str, Any], timeout: float = 600) -> Ran:
    """Invoke one Lambda function's handler on ``event``, in a process of its own with the
    function's code laid out as its zip is (``make layers``) and its declared environment."""
    from layers.build import BuildConfig, stage_function

    function = local.declared.functions.get(key)
    if function is None:
        raise RehearsalError(f"the stack declares no function {key!r}")
    home = local.home(key)
    task_root = home / "task"
    stage_function(BuildConfig(root=REPO), key, task_root)
    (home / "event.json").write_text(json.dumps(event))
    environment = {
        # What the Lambda runtime sets itself.
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PYTHONPATH": str(task_root),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        # The function's own.
        **{k: local.localize(k, v) for k, v in function.environment.items()},
        **local.moto.environment,
    }
    argv = [sys.executable, "-c", _LAMBDA_RUNTIME, function.handler,
            str(home / "event.json"), str(home / "result.json")]  # fmt: skip
    with local.logins.during() as logins:
        done = subprocess.run(
            argv, env=environment, cwd=task_root, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise RehearsalError(f"function {key} ({function.handler}) failed:\n{_tail(output)}")
    return Ran([*argv[:1], function.handler], output, logins,
               json.loads((home / "result.json").read_text()))  # fmt: skip


@dataclass
class Server:
    """A long-running task (the service, the monitoring page) started as ECS would start it."""

    key: str
    url: str
    process: subprocess.Popen
    home: Path
    argv: list[str]

    def output(self) -> str:
        return (self.home / "output.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


@contextmanager
def running(local: Local, key: str, timeout: float = 180) -> Iterator[Server]:
    """Start a load-balanced task and wait until its target group's health check answers 200,
    as the load balancer does before it routes to it; stopped when the block ends."""
    container = local.declared.tasks.get(key)
    if container is None:
        raise RehearsalError(f"the stack declares no task {key!r}")
    health = local.declared.health_checks.get(key)
    if health is None:
        raise RehearsalError(f"task {key}: no load-balanced service of the stack runs it")
    image = image_of(local.declared, container)
    home = local.home(key)
    environment = local.container_environment(container, image, home)
    port = free_port()
    words = list(container.command if container.command is not None else image.cmd)
    if image.service is not None:
        # The Bento: `bentoml serve` of the bentofile's service, from a directory holding only
        # what the bentofile includes (the Bento's src/), on a local port.
        source = home / "bento" / "src"
        for pattern in image.include:
            for path in REPO.glob(pattern):
                target = source / path.relative_to(REPO)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        argv = [str(VENV_BIN / "python"), "-m", *image.entrypoint, *words, "--port", str(port),
                "--working-dir", str(source)]  # fmt: skip
    else:
        argv = [*image.entrypoint, *words, "--port", str(port)]
        argv[0] = shutil.which(argv[0], path=environment["PATH"]) or argv[0]
    log = (home / "output.log").open("wb")
    server = Server(key, f"http://127.0.0.1:{port}", subprocess.Popen(
        argv, env=environment, cwd=home, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    ), home, argv)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.process.poll() is not None:
                raise RehearsalError(
                    f"task {key}: `{' '.join(argv)}` exited {server.process.returncode}:\n"
                    f"{_tail(server.output())}"
                )
            try:
                if httpx.get(server.url + health, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RehearsalError(
                    f"task {key}: {health} never answered 200 within {timeout:.0f} s:\n"
                    f"{_tail(server.output())}"
                )
            time.sleep(0.5)
        yield server
    finally:
        server.stop()
        log.close()
