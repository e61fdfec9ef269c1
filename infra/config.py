"""The stack's settings: read from Pulumi config once, then a plain frozen value.

Components take a :class:`StackSettings` and never touch ``pulumi.Config``, so tests build them
from a literal and a deployment reads its configuration in exactly one place
(:func:`load_settings`). Every key is documented in Pulumi.example.yaml.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

MIN_BACKUP_RETENTION_DAYS = 7
LAMBDA_RUNTIME = "python3.12"
ANYWHERE = ("0.0.0.0/0", "::/0")
MONITORING_AUTH = ("none", "cognito", "oidc")
OIDC_KEYS = ("oidcIssuer", "oidcAuthorizationEndpoint", "oidcTokenEndpoint",
             "oidcUserInfoEndpoint", "oidcClientId")  # fmt: skip
# Config keys read as Pulumi secrets (encrypted in Pulumi.<stack>.yaml), never into settings.
SECRET_KEYS = ("oidcClientSecret",)
# <project>-<stack>-monitoring is a target-group name: 32 characters at most.
MAX_NAME = 32 - len("-monitoring")
REPO_ROOT = Path(__file__).resolve().parent.parent


class StackSettingsError(ValueError):
    """A stack setting is out of range; the message names the key and how to fix it."""


@dataclass(frozen=True)
class StackSettings:
    """Everything the components need to know; defaults are the documented default stack."""

    region: str
    stack: str = "dev"
    project: str = "pricebot"
    extra_tags: dict[str, str] = field(default_factory=dict)

    # Network.
    vpc_cidr: str = "10.40.0.0/16"
    az_count: int = 2
    nat_gateways: int = 1
    interface_endpoints: bool = True
    # Who may reach the load balancer: nobody until it is set (the deploy opens it to its own
    # runner for the smoke test only). 0.0.0.0/0 needs allowPublicIngress: true.
    ingress_cidrs: tuple[str, ...] = ()
    allow_public_ingress: bool = False
    certificate_arn: str | None = None
    domain_name: str | None = None  # the name clients use (the certificate's); needs DNS
    hosted_zone_id: str | None = None  # Route 53 zone: the stack then creates the alias record

    # Database.
    db_instance_class: str = "db.t4g.micro"
    db_allocated_storage_gb: int = 20
    db_max_allocated_storage_gb: int = 100
    db_backup_retention_days: int = 7
    db_deletion_protection: bool = True
    db_multi_az: bool = False

    # Pipeline.
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "ADAUSDT")
    binance_url: str = "https://api.binance.com"
    vision_url: str = "https://data.binance.vision"  # the bootstrap job's archive source
    feature_set: str = "v1"
    lambda_architecture: Literal["x86_64", "arm64"] = "x86_64"
    core_layer_zip: str = "layers/build/layer-core.zip"
    data_layer_zip: str = "layers/build/layer-data.zip"
    ingest_zip: str = "layers/build/ingest.zip"
    transform_zip: str = "layers/build/transform.zip"
    ingest_schedule: str = "rate(5 minutes)"
    transform_schedule: str = "rate(1 hour)"
    lag_alarm_seconds: int = 900
    alarm_email: str | None = None
    log_retention_days: int = 30

    # MLflow server.
    mlflow_instance_type: str = "t3.small"
    mlflow_version: str = "3.17.2"
    mlflow_ami_parameter: str = (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )

    # Serving and monitoring.
    service_image_tag: str | None = None
    monitoring_image_tag: str | None = None
    model_alias: str = "champion"
    targets: tuple[str, ...] = ("ret24h",)
    service_cpu: int = 512
    service_memory_mb: int = 1024
    service_min_tasks: int = 1
    service_max_tasks: int = 3
    service_cpu_target_percent: float = 60.0
    monitoring_cpu: int = 512
    monitoring_memory_mb: int = 1024
    # Who may open the monitoring page: an ALB authenticate action (HTTPS only), or nobody
    # ("none": the page is not routed at all).
    monitoring_auth: Literal["none", "cognito", "oidc"] = "none"
    cognito_domain_prefix: str | None = None  # default <project>-<stack>-<account id>
    oidc_issuer: str | None = None
    oidc_authorization_endpoint: str | None = None
    oidc_token_endpoint: str | None = None
    oidc_user_info_endpoint: str | None = None
    oidc_client_id: str | None = None

    # Jobs on the job image (trainingImageTag): migrations, bootstrap, training, scoring,
    # batch predictions.
    training_image_tag: str | None = None
    training_cpu: int = 2048
    training_memory_mb: int = 8192
    bootstrap_history_days: int = 90
    bootstrap_trials: int = 30  # Optuna trials of the bootstrap's first training per pair
    # The batch predictions job (`pricebot predict`): every served symbol and target into the
    # prediction log, so live performance accrues without callers.
    predict_schedule: str = "rate(1 hour)"

    # Alarms on the service and on the model.
    service_error_alarm_count: int = 5  # 5XX answers in 5 minutes
    latency_alarm_seconds: float = 1.0  # p95 target response time, 3 periods of 5 minutes
    model_health_schedule: str = "rate(1 hour)"
    model_health_window_hours: float = 24.0  # rolling window of matured outcomes
    model_health_alarm_hours: int = 6  # champion worse than no change this many hours running
    error_ratio_alarm_threshold: float = 1.0
    drift_alarm_psi: float = 0.25

    # The boundary every IAM role gets (the bootstrap stack's rolePermissionsBoundaryArn output;
    # the scoped deploy role creates no role without it).
    role_permissions_boundary_arn: str | None = None

    # Teardown.
    force_destroy: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @property
    def name(self) -> str:
        """Prefix of physical names: short, stack-unique, valid for every AWS service used."""
        return f"{self.project}-{self.stack}"

    @property
    def tags(self) -> dict[str, str]:
        return {
            "project": self.project,
            "stack": self.stack,
            "managed-by": "pulumi",
            **self.extra_tags,
        }

    def validate(self) -> None:
        """Refuse settings that would deploy something unsafe or impossible, naming the key."""
        problems: list[str] = []
        if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", self.name) or len(self.name) > MAX_NAME:
            problems.append(
                f"the name prefix {self.name!r} (project-stack) must be lower-case letters, "
                f"digits and hyphens, at most {MAX_NAME} characters (AWS limits target-group "
                "and load-balancer names to 32): rename the stack or set project"
            )
        if self.db_backup_retention_days < MIN_BACKUP_RETENTION_DAYS:
            problems.append(
                f"dbBackupRetentionDays is {self.db_backup_retention_days}; keep at least "
                f"{MIN_BACKUP_RETENTION_DAYS} days of backups"
            )
        if not 2 <= self.az_count <= 3:
            problems.append(f"azCount is {self.az_count}; use 2 or 3 availability zones")
        if not 1 <= self.nat_gateways <= self.az_count:
            problems.append(
                f"natGateways is {self.nat_gateways}; use 1 (cheapest) up to azCount "
                f"({self.az_count}, one per zone)"
            )
        try:
            network = ipaddress.ip_network(self.vpc_cidr)
            if network.prefixlen > 18:
                problems.append(f"vpcCidr {self.vpc_cidr} is too small; use a /16 to /18")
        except ValueError:
            problems.append(f"vpcCidr {self.vpc_cidr!r} is not a CIDR block like 10.40.0.0/16")
        for cidr in self.ingress_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError:
                problems.append(f"ingressCidrs holds {cidr!r}, which is not a CIDR block")
        opened = sorted(set(self.ingress_cidrs) & set(ANYWHERE))
        if opened and not self.allow_public_ingress:
            problems.append(
                f"ingressCidrs holds {opened}, the whole internet: list the ranges that need "
                "the API and the page, or set allowPublicIngress: true to open it on purpose"
            )
        problems += self._access_problems()
        if self.lambda_architecture not in ("x86_64", "arm64"):
            problems.append(
                f"lambdaArchitecture is {self.lambda_architecture!r}; use x86_64 or arm64 "
                "(the one `make layers` built for)"
            )
        if not self.symbols:
            problems.append("symbols is empty; list at least one, e.g. [BTCUSDT]")
        if not 1 <= self.service_min_tasks <= self.service_max_tasks:
            problems.append(
                f"serviceMinTasks/serviceMaxTasks are {self.service_min_tasks}/"
                f"{self.service_max_tasks}; need 1 <= min <= max"
            )
        try:
            canonical_targets(self.targets)
        except ValueError as exc:
            problems.append(f"targets: {exc}")
        if not self.targets:
            problems.append("targets is empty; list at least one, e.g. [ret24h]")
        if self.bootstrap_history_days < 1:
            problems.append("bootstrapHistoryDays must be at least 1")
        if self.bootstrap_trials < 0:
            problems.append("bootstrapTrials must be 0 or more")
        if self.model_health_alarm_hours < 1:
            problems.append("modelHealthAlarmHours must be at least 1")
        if problems:
            raise StackSettingsError("; ".join(problems))

    def _access_problems(self) -> list[str]:
        """HTTPS and the monitoring page's sign-in: consistent, or refused with the fix."""
        problems = []
        if self.monitoring_auth not in MONITORING_AUTH:
            problems.append(
                f"monitoringAuth is {self.monitoring_auth!r}; use none, cognito or oidc"
            )
        elif self.monitoring_auth != "none" and not self.certificate_arn:
            problems.append(
                f"monitoringAuth is {self.monitoring_auth}, but the load balancer's authenticate "
                "actions work only on an HTTPS listener: set certificateArn (an ACM certificate "
                "for domainName), or monitoringAuth: none to leave the page unrouted"
            )
        if self.certificate_arn and not self.domain_name:
            problems.append(
                "certificateArn is set but domainName is not: name the host the certificate is "
                "for (clients, and the sign-in callback, use it instead of the ALB's own name)"
            )
        if self.hosted_zone_id and not self.domain_name:
            problems.append("hostedZoneId is set but domainName is not")
        if self.monitoring_auth == "oidc":
            fields_of = config_keys()
            missing = [k for k in OIDC_KEYS if not getattr(self, fields_of[k])]
            if missing:
                problems.append(f"monitoringAuth is oidc, so set {missing} too")
        return problems

    @property
    def monitoring_routed(self) -> bool:
        """Whether the load balancer routes /monitor at all (only behind a sign-in)."""
        return self.monitoring_auth != "none"

    def missing_artifacts(self, root: Path = REPO_ROOT) -> list[str]:
        """The Lambda zips that `make layers` has not built yet (relative to the repo root)."""
        paths = (self.core_layer_zip, self.data_layer_zip, self.ingest_zip, self.transform_zip)
        return [p for p in paths if not (root / p).is_file()]


def canonical_targets(targets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Targets as the service names them in its log and metrics (RET1440M -> ret24h).

    The model-health alarms' dimensions must match what the scoring job publishes, which is the
    canonical spelling (pricebot.targets), so the stack uses the same function.
    """
    from pricebot.targets import TargetSpecError, parse_target

    try:
        return tuple(dict.fromkeys(parse_target(t).name for t in targets))
    except TargetSpecError as exc:
        raise ValueError(str(exc)) from None


def _key(name: str) -> str:
    """snake_case field name -> the camelCase config key (db_multi_az -> dbMultiAz)."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def config_keys() -> dict[str, str]:
    """Config key -> field name, for every setting read from ``pricebot:`` config."""
    return {
        _key(f.name): f.name for f in fields(StackSettings) if f.name not in ("region", "stack")
    }


def _coerce(name: str, raw: Any) -> Any:
    """A config value as the field's type, judged by its default (config values are strings)."""
    spec = next(f for f in fields(StackSettings) if f.name == name)
    default = spec.default_factory() if callable(spec.default_factory) else spec.default
    if default is None:  # optional strings: empty means unset
        return str(raw) if raw not in (None, "") else None
    if not isinstance(raw, str):
        value = raw
    elif isinstance(default, bool):
        if raw.lower() not in ("true", "false"):
            raise StackSettingsError(f"{_key(name)} must be true or false, got {raw!r}")
        return raw.lower() == "true"
    elif isinstance(default, int | float | tuple | dict):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.split(",") if isinstance(default, tuple) else raw
    else:
        return raw
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise StackSettingsError(f"{_key(name)} must be a list, got {raw!r}")
        return tuple(str(v).strip() for v in value)
    if isinstance(default, bool | int | float) and not isinstance(value, int | float):
        raise StackSettingsError(f"{_key(name)} must be a number, got {raw!r}")
    if isinstance(default, dict) and not isinstance(value, dict):
        raise StackSettingsError(f"{_key(name)} must be a map of strings, got {raw!r}")
    return value


def load_settings(
    values: dict[str, Any], *, region: str | None, stack: str, root: Path = REPO_ROOT
) -> StackSettings:
    """Build settings from the ``pricebot:`` config values (camelCase keys).

    Unknown keys are an error, so a misspelt key does not silently deploy a default; values may
    be the strings Pulumi config holds or already-parsed values.
    """
    if not region:
        raise StackSettingsError("aws:region is not set; run `pulumi config set aws:region <r>`")
    known = config_keys()
    values = {k: v for k, v in values.items() if k not in SECRET_KEYS}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise StackSettingsError(
            f"unknown config keys {unknown}; the keys are listed in Pulumi.example.yaml"
        )
    kwargs = {known[key]: _coerce(known[key], raw) for key, raw in values.items()}
    settings = StackSettings(region=region, stack=stack, **kwargs)
    missing = settings.missing_artifacts(root)
    if missing:
        raise StackSettingsError(
            f"Lambda artifacts not found: {missing}. Run `make layers` first (or point "
            "coreLayerZip/dataLayerZip/ingestZip/transformZip at where they are)."
        )
    check_manifest(settings, root)
    return settings


def check_manifest(settings: StackSettings, root: Path = REPO_ROOT) -> None:
    """Refuse zips built for another architecture or runtime than the stack deploys.

    ``make layers`` writes manifest.json next to the zips; a stack that deployed x86_64 wheels
    as arm64 functions would fail only at the first invocation, with an import error.
    """
    manifest = root / Path(settings.ingest_zip).parent / "manifest.json"
    if not manifest.is_file():
        return
    built = json.loads(manifest.read_text())
    if built.get("arch") != settings.lambda_architecture:
        raise StackSettingsError(
            f"the Lambda zips in {manifest.parent} were built for {built.get('arch')}, but "
            f"lambdaArchitecture is {settings.lambda_architecture}; rebuild with "
            f"`make layers` for {settings.lambda_architecture} or change lambdaArchitecture"
        )
    if built.get("runtime") != LAMBDA_RUNTIME:
        raise StackSettingsError(
            f"the Lambda zips in {manifest.parent} were built for {built.get('runtime')}, but "
            f"the functions run {LAMBDA_RUNTIME}; rebuild them with `make layers`"
        )
