"""The deploy rehearsal (issue 14): every ECS task and Lambda function the Pulumi program
declares, run here as its declaration says, in the order a deploy runs them, on the suite's real
PostgreSQL and MLflow, with AWS through a moto server.

The stack is the program's own (``infra.stack.build`` under Pulumi's mocks), configured small:
one symbol of the simulated exchange, a 30-minute target, 27 days of history (the v1 features
need 24 before their first row), one Optuna trial. What each step runs, and how its values are
mapped to the local stand-ins, is in tests/infra/rehearsal.py. In deploy order
(.github/workflows/deploy.yml, then what runs on its own once deployed):

1. ``migrate``: the migration task, as the RDS master user, which also fills the component
   secrets the stack created empty and gives each login role its password;
2. ``bootstrap``: the bootstrap task: history from Binance Vision (a local server with the
   exchange's candles as archives), features, a first training;
3. ``ingest``: the ingest function on its schedule's event, against the simulated exchange;
4. ``transform``: the transform function on the event the ingest function put on the bus, as
   the stack's ``KlinesIngested`` rule delivers it;
5. ``training``: the training task with the command the retrain workflow builds from the
   stack's training-task parameter;
6. ``promote``: only when the gate promoted nothing (on this synthetic market it rightly finds
   no skill over the momentum baseline): the operator's ``pricebot promote`` of the newest
   version, on the training task (a RunTask override, as docs/deploy.md describes);
7. ``service``: the Bento as its bentofile declares it, health-checked like the load
   balancer does, then ``/predict`` with the API key from its injected secret, and without;
8. ``predict``: the hourly batch prediction task, its prediction of the champion read back from
   the prediction log and its heartbeat from CloudWatch;
9. ``monitoring``: the page's task, its health check, and the page drawn in a real browser;
10. ``score``: the hourly scoring task, its metrics read back from CloudWatch.

Each test asks for the state after one step; steps run once per module, in that order, each
after the steps it needs. The negative cases at the end change one declaration at a time and
show that the rehearsal then fails, at that step, saying why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import psycopg
import pytest

from infra.config import StackSettings
from pricebot.features import warmup_minutes
from pricebot_local.localdb import LocalPostgres
from tests.infra.rehearsal import (
    REGION,
    Cluster,
    Declared,
    Local,
    Login,
    Moto,
    Ran,
    RehearsalError,
    VisionServer,
    call_function,
    declare,
    run_task,
    running,
)

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.system, pytest.mark.browser, pytest.mark.timeout(1800)]

SYMBOL = "RHSLUSDT"  # only this module trades it: the MLflow server is shared
TARGET = "ret30m"
MODEL = f"pricebot-{SYMBOL.lower()}-{TARGET}"
TAG = "2026.12.02-rehearsal"
TRIALS = "1"  # what the retrain workflow would pass as {trials}
HISTORY_DAYS = 27
SETTINGS = StackSettings(
    region=REGION,
    stack="rehearsal",
    symbols=(SYMBOL,),
    targets=(TARGET,),
    bootstrap_history_days=HISTORY_DAYS,
    bootstrap_trials=int(TRIALS),
    service_image_tag=TAG,
    monitoring_image_tag=TAG,
    training_image_tag=TAG,
    # As production runs: HTTPS, and the page routed behind the load balancer's sign-in (so the
    # stack declares its service and health check).
    certificate_arn="arn:aws:acm:eu-west-1:123456789012:certificate/rehearsal",
    domain_name="pricebot.rehearsal.example",
    monitoring_auth="cognito",
)
MARKET = "simulated:swinging"
MASTER = "pricebot"  # infra.components.database.MASTER_USERNAME, checked below
#: Who each step must log in as: the component's own role (docs/deploy.md).
ROLES = {
    "migrate": MASTER,
    "bootstrap": "pricebot_bootstrap_login",
    "ingest": "pricebot_pipeline_login",
    "transform": "pricebot_pipeline_login",
    "training": "pricebot_training_login",
    "service": "pricebot_service_login",
    "predict": "pricebot_service_login",  # the service's path, so the service's login
    "monitoring": "pricebot_monitoring_login",
    "score": "pricebot_pipeline_login",
}


# --- the world ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def declared() -> Declared:
    return declare(SETTINGS)


@pytest.fixture(scope="module")
def cluster(postgres: LocalPostgres, declared: Declared) -> Iterator[Cluster]:
    assert declared.master_username == MASTER
    cluster = Cluster(postgres, declared.master_username)
    try:
        yield cluster
    finally:
        cluster.restore()
        cluster.drop_roles(sorted(set(ROLES.values()) - {MASTER}))


@pytest.fixture(scope="module")
def market() -> Iterator[str]:
    from pricebot_exchange.exchange import ExchangeConfig, running_exchange

    config = ExchangeConfig(symbols=[SYMBOL], history_days=HISTORY_DAYS + 5, market="swinging")
    with running_exchange(config) as exchange:
        yield exchange.url


@pytest.fixture(scope="module")
def vision(market: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VisionServer]:
    server = VisionServer(tmp_path_factory.mktemp("vision"), MARKET)
    today = datetime.now(UTC).date()
    server.publish(market, SYMBOL, today - timedelta(days=HISTORY_DAYS + 2), today - timedelta(1))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Worlds:
    """Makes rehearsal worlds: a database, a moto server, the declared secrets and rules."""

    cluster: Cluster
    tracking_uri: str
    exchange_url: str
    vision_url: str
    tmp: pytest.TempPathFactory

    @contextmanager
    def __call__(self, declared: Declared) -> Iterator[Local]:
        workdir = self.tmp.mktemp("world")
        database = self.cluster.create_database()
        moto = Moto(workdir)
        try:
            local = Local(declared, self.cluster, database, moto, self.tracking_uri,
                          self.exchange_url, self.vision_url, workdir)  # fmt: skip
            local.create_aws()
            yield local
        finally:
            moto.stop()
            self.cluster.drop_database(database)


@pytest.fixture(scope="module")
def worlds(
    cluster: Cluster, mlflow_server: str, market: str, vision: VisionServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Worlds:  # fmt: skip
    return Worlds(cluster, mlflow_server, market, vision.url, tmp_path_factory)


# --- the steps, in deploy order -----------------------------------------------------------------
def scheduled_event(declared: Declared, rule: str) -> dict[str, Any]:
    """What EventBridge sends a target when a schedule rule fires."""
    return {
        "version": "0", "id": "rehearsal-schedule", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/{declared.name}-{rule}"],
        "detail": {},
    }  # fmt: skip


@dataclass
class Step:
    """A step done: what ran (with whom it logged in as) and the facts read right after it."""

    runs: list[Ran]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def logins(self) -> set[Login]:
        return {login for ran in self.runs for login in ran.logins}


@dataclass
class Rehearsal:
    """The deploy's steps over one world, each run once, after the steps it needs."""

    local: Local
    done: dict[str, Step] = field(default_factory=dict)
    failed: dict[str, Exception] = field(default_factory=dict)

    NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "migrate": (), "bootstrap": ("migrate",), "ingest": ("bootstrap",),
        "transform": ("ingest",), "training": ("transform",), "promote": ("training",),
        "service": ("promote",), "predict": ("service",), "monitoring": ("promote",),
        "score": ("promote",),
    }  # fmt: skip

    def require(self, step: str) -> Step:
        """The step done (once), after what it needs; a step that failed fails again at once."""
        if step in self.failed:
            raise self.failed[step]
        if step not in self.done:
            for need in self.NEEDS[step]:
                self.require(need)
            started = time.monotonic()
            try:
                self.done[step] = getattr(self, step)()
            except Exception as exc:  # kept, so the tests after it fail at once too
                self.failed[step] = exc
                raise
            finally:
                log.info("rehearsal step %s: %.1f s", step, time.monotonic() - started)
        return self.done[step]

    def before(self, step: str) -> set[str]:
        """The steps ``step`` needs, directly or through another."""
        needs = set(self.NEEDS[step])
        for need in self.NEEDS[step]:
            needs |= self.before(need)
        return needs

    def fork(self, declared: Declared, step: str) -> Rehearsal:
        """This world after ``step``'s needs, where ``step`` runs (again) with ``declared``."""
        for need in self.NEEDS[step]:
            self.require(need)
        done = {k: v for k, v in self.done.items() if k in self.before(step)}
        return Rehearsal(replace(self.local, declared=declared), done)

    # Each step fails (RehearsalError) where a deploy, or what it deployed, would.
    def migrate(self) -> Step:
        from pricebot.roles import current_value

        ran = run_task(self.local, "migrate")
        secrets = self.local.moto.client("secretsmanager")
        values = {  # None: still empty
            secret.name: current_value(secrets, self.local.secret_arns[secret.arn])
            for secret in self.local.declared.secrets
        }
        [(revision,)] = self.query("SELECT version_num FROM alembic_version")
        return Step([ran], {"secrets": values, "revision": revision})

    def bootstrap(self) -> Step:
        ran = run_task(self.local, "bootstrap")
        [(first, last, features, markets)] = self.query(
            "SELECT min(open_time), max(open_time), (SELECT count(*) FROM features),"
            " (SELECT markets FROM candle_markets WHERE symbol = %s) FROM klines",
            (SYMBOL,),
        )
        versions = [v.version for v in self.registry().versions(MODEL)]
        return Step([ran], {"first": first, "last": last, "features": features,
                            "markets": markets, "versions": versions,
                            "at": datetime.now(UTC)})  # fmt: skip

    def ingest(self) -> Step:
        event = scheduled_event(self.local.declared, "ingest-schedule")
        ran = call_function(self.local, "ingest", event)
        events = self.local.delivered_events()
        if not events:
            raise RehearsalError(
                "function ingest: no event reached the transform function's rule "
                f"(it returned {ran.result})"
            )
        [(newest,)] = self.query("SELECT max(open_time) FROM klines")
        return Step([ran], {"events": events, "newest": newest, "at": datetime.now(UTC)})

    def transform(self) -> Step:
        event = self.done["ingest"].facts["events"][0]
        ran = call_function(self.local, "transform", event)
        [(candle, feature)] = self.query(
            "SELECT (SELECT max(open_time) FROM klines), (SELECT max(open_time) FROM features)"
        )
        return Step([ran], {"newest_candle": candle, "newest_feature": feature})

    def training(self) -> Step:
        # As the retrain workflow does: the parameter names the task and the command template.
        spec = self.local.declared.training_task
        task = self.local.declared.tasks.get(spec["container"])
        if task is None or task.family != spec["taskDefinition"]:
            raise RehearsalError(f"the training-task parameter names no declared task: {spec}")
        runs = [
            run_task(self.local, spec["container"], command=[
                word.format(symbol=symbol, target=spec["targets"][0], trials=TRIALS)
                for word in spec["command"]
            ])
            for symbol in spec["symbols"]
        ]  # fmt: skip
        registry = self.registry()
        return Step(runs, {
            "versions": sorted(v.version for v in registry.versions(MODEL)),
            "challenger": registry.alias_version(MODEL, "challenger"),
            "champion": registry.alias_version(MODEL, "champion"),
        })  # fmt: skip

    def promote(self) -> Step:
        registry = self.registry()
        runs = []
        if registry.alias_version(MODEL, "champion") is None:
            newest = max(int(v.version) for v in registry.versions(MODEL))
            runs.append(run_task(self.local, "training", command=[
                "promote", "--symbol", SYMBOL, "--target", TARGET, "--version", str(newest),
                "--reason", "deploy rehearsal: serve the newest version, the gate kept none",
            ]))  # fmt: skip
        moves = self.query(
            "SELECT version FROM model_alias_events WHERE model_name = %s AND alias = 'champion'"
            " ORDER BY id",
            (MODEL,),
        )
        return Step(runs, {"champion": registry.alias_version(MODEL, "champion"),
                           "moves": [v for (v,) in moves]})  # fmt: skip

    def service(self) -> Step:
        champion = self.registry().alias_version(MODEL, "champion")
        # The key a client has: the stack's API key secret (as the deploy's smoke test reads
        # it), whatever the task was given.
        [keys] = [s for s in self.local.declared.secrets if s.name == f"{SETTINGS.name}/api-keys"]
        key = self.local.secret_value(keys.arn).split(",")[0]
        body = {"symbol": SYMBOL, "target": TARGET}
        with self.local.logins.during() as logins, running(self.local, "service") as server:
            with_key = httpx.post(f"{server.url}/predict", json=body,
                                  headers={"X-API-Key": key}, timeout=60)  # fmt: skip
            without_key = httpx.post(f"{server.url}/predict", json=body, timeout=60)
            output = server.output()
        if without_key.status_code != 401:
            raise RehearsalError(
                f"task service: /predict answered {without_key.status_code} without an API key"
            )
        if with_key.status_code != 200:
            raise RehearsalError(
                f"task service: /predict with the API key answered {with_key.status_code}: "
                f"{with_key.text[:500]}\n{output[-3000:]}"
            )
        ran = Ran(server.argv, output, logins)
        # The server has stopped, so its prediction log has written what it held
        answer = with_key.json()
        logged = self.query(
            "SELECT model_name, model_version FROM predictions WHERE request_id = %s",
            (answer["request_id"],),
        )
        return Step([ran], {"with_key": answer, "without_key": without_key.status_code,
                            "champion": champion, "logged": logged})  # fmt: skip

    def predict(self) -> Step:
        [(last,)] = self.query("SELECT coalesce(max(id), 0) FROM predictions")
        before = self.datapoints()
        ran = run_task(self.local, "predict")
        after = self.datapoints()
        heartbeat = {
            name: value for (name, key), value in self.latest().items()
            if after.get((name, key), 0) > before.get((name, key), 0)
        }  # fmt: skip
        logged = self.query(
            "SELECT symbol, target, model_name, model_version, alias FROM predictions"
            " WHERE id > %s ORDER BY id",
            (last,),
        )
        if not logged:
            raise RehearsalError(f"task predict: logged no prediction:\n{ran.output[-2000:]}")
        if "BatchPredictionsLogged" not in heartbeat:
            raise RehearsalError("task predict: published no heartbeat to CloudWatch")
        champion = self.registry().alias_version(MODEL, "champion")
        return Step([ran], {"logged": logged, "champion": champion, "heartbeat": heartbeat})

    def monitoring(self) -> Step:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        from pricebot_local.browser import chromium_launch_options

        heading = f"{SYMBOL} {TARGET}: price and predictions"
        error = "[data-testid='stAlertContentError'], [data-testid='stException']"
        with (
            self.local.logins.during() as logins,
            running(self.local, "monitoring") as server,
            sync_playwright() as playwright,
        ):
            health = httpx.get(server.url + self.local.declared.health_checks["monitoring"])
            browser = playwright.chromium.launch(**chromium_launch_options())
            try:
                page = browser.new_page()
                page.goto(server.url + self.local.declared.monitoring_path, timeout=60_000)
                drawn = page.get_by_text(heading, exact=True)
                try:
                    page.locator(error).or_(drawn).first.wait_for(timeout=90_000)
                    page.locator("[data-testid='stStatusWidget']").wait_for(
                        state="hidden", timeout=60_000
                    )
                except PlaywrightError as exc:
                    raise RehearsalError(
                        f"task monitoring: the page was not drawn ({exc.message.splitlines()[0]}"
                        f"): {page.locator('body').inner_text()[:500]}"
                    ) from exc
                text = page.locator("[data-testid='stMain']").inner_text()
                errors = page.locator(error).all_inner_texts()
            finally:
                browser.close()
            output = server.output()
        if errors or heading not in text:
            raise RehearsalError(f"task monitoring: the page shows {errors or text[:500]}")
        ran = Ran(server.argv, output, logins)
        return Step([ran], {"health": health.text, "text": text})

    def score(self) -> Step:
        before = self.datapoints()
        ran = run_task(self.local, "score")
        after = self.datapoints()
        published = {
            name: dict(dimensions)
            for (name, dimensions), count in after.items()
            if count > before.get((name, dimensions), 0)
        }
        if not published:
            raise RehearsalError("task score: published no metrics to CloudWatch")
        return Step([ran], {"published": published})

    # What the harness reads back (as the master user, over TLS, or from the tracking server).
    def datapoints(self) -> dict[tuple[str, tuple], float]:
        """How many values CloudWatch holds per model-health metric (and dimensions)."""
        cloudwatch = self.local.moto.client("cloudwatch")
        now = datetime.now(UTC)
        counts = {}
        for metric in cloudwatch.list_metrics(Namespace="pricebot/model")["Metrics"]:
            stats = cloudwatch.get_metric_statistics(
                Namespace="pricebot/model", MetricName=metric["MetricName"],
                Dimensions=metric["Dimensions"], StartTime=now - timedelta(days=1),
                EndTime=now + timedelta(days=1), Period=86400 * 2, Statistics=["SampleCount"],
            )  # fmt: skip
            dimensions = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            counts[(metric["MetricName"], dimensions)] = sum(
                p["SampleCount"] for p in stats["Datapoints"]
            )
        return counts

    def latest(self) -> dict[tuple[str, tuple], float]:
        """The largest value of the last day per metric without dimensions (the heartbeats)."""
        cloudwatch = self.local.moto.client("cloudwatch")
        now = datetime.now(UTC)
        values = {}
        for metric in cloudwatch.list_metrics(Namespace="pricebot/model")["Metrics"]:
            if metric["Dimensions"]:
                continue
            stats = cloudwatch.get_metric_statistics(
                Namespace="pricebot/model", MetricName=metric["MetricName"], Dimensions=[],
                StartTime=now - timedelta(days=1), EndTime=now + timedelta(days=1),
                Period=86400 * 2, Statistics=["Maximum"],
            )  # fmt: skip
            values[(metric["MetricName"], ())] = max(p["Maximum"] for p in stats["Datapoints"])
        return values

    def query(self, sql: str, params: object = None) -> list[tuple]:
        url = self.local.cluster.admin_url(self.local.database)
        with psycopg.connect(url) as conn:
            return conn.execute(sql, params).fetchall()

    def registry(self) -> Any:
        from pricebot.registry import Registry

        return Registry(self.local.tracking_uri)


@pytest.fixture(scope="module")
def rehearsal(worlds: Worlds, declared: Declared) -> Iterator[Rehearsal]:
    with worlds(declared) as local:
        yield Rehearsal(local)


# --- the positive run ---------------------------------------------------------------------------
def test_the_rehearsal_runs_every_task_and_function_the_stack_declares(
    declared: Declared,
) -> None:
    # A task or function added to infra/ must be given a step here
    rehearsed_tasks = {
        "migrate", "bootstrap", "training", "service", "predict", "monitoring", "score",
    }  # fmt: skip
    assert set(declared.tasks) == rehearsed_tasks
    assert set(declared.functions) == {"ingest", "transform"}
    # and the load balancer health-checks both services where the rehearsal does
    assert declared.health_checks == {
        "service": "/readyz", "monitoring": "/monitor/_stcore/health",
    }  # fmt: skip


def test_rehearsal_migrate_fills_every_secret_and_gives_each_login_its_password(
    rehearsal: Rehearsal,
) -> None:
    from pricebot.db import head_revision

    facts = rehearsal.require("migrate").facts

    # Then each component's secret holds its login role and a generated password
    secrets = dict(facts["secrets"])
    assert len(secrets.pop(f"{SETTINGS.name}/api-keys")) == 40
    assert {name: json.loads(value)["username"] for name, value in secrets.items()} == {
        f"{SETTINGS.name}/db/{component}": f"pricebot_{component}_login"
        for component in ("service", "monitoring", "pipeline", "training", "bootstrap")
    }
    assert all(len(json.loads(value)["password"]) == 40 for value in secrets.values())
    # and the schema is at the newest revision
    assert facts["revision"] == head_revision()


def test_rehearsal_bootstrap_loads_the_history_from_the_archives_and_trains_a_first_model(
    rehearsal: Rehearsal,
) -> None:
    step = rehearsal.require("bootstrap")
    facts = step.facts

    # Then the candles reach back the configured days, from the archives of the simulated market
    midnight = facts["at"].replace(hour=0, minute=0, second=0, microsecond=0)
    assert facts["first"] == midnight - timedelta(days=HISTORY_DAYS)
    assert facts["last"] == midnight - timedelta(minutes=1)  # archives end with yesterday
    assert facts["markets"] == [MARKET]
    # and the features of every minute after the feature set's warm-up
    assert facts["features"] == HISTORY_DAYS * 1440 - warmup_minutes("v1")
    # and the pair was trained once, through the gate
    assert f"training {SYMBOL} {TARGET} (1 trials)" in step.runs[0].output
    assert facts["versions"] == ["1"]


def test_rehearsal_ingest_catches_up_to_now_and_announces_it_on_the_bus(
    rehearsal: Rehearsal,
) -> None:
    step = rehearsal.require("ingest")
    facts = step.facts

    assert facts["at"] - facts["newest"] < timedelta(minutes=3)
    [event] = facts["events"]
    assert (event["source"], event["detail-type"]) == ("pricebot.klines", "KlinesIngested")
    [announced] = event["detail"]["symbols"]
    assert announced["symbol"] == SYMBOL
    assert announced["rows"] == step.runs[0].result["candles_written"] > 0


def test_rehearsal_transform_brings_the_features_up_to_the_ingested_candles(
    rehearsal: Rehearsal,
) -> None:
    step = rehearsal.require("transform")

    assert step.facts["newest_feature"] == step.facts["newest_candle"]
    assert step.runs[0].result["feature_rows"][SYMBOL] > 0


def test_rehearsal_training_registers_a_new_version_as_challenger(rehearsal: Rehearsal) -> None:
    facts = rehearsal.require("training").facts

    assert facts["versions"] == ["1", "2"]
    assert facts["challenger"] == "2"


def test_rehearsal_a_champion_is_served_whichever_way_it_was_promoted(
    rehearsal: Rehearsal,
) -> None:
    facts = rehearsal.require("promote").facts

    # The gate's promotion or the operator's: either way recorded in the database
    assert facts["champion"] in ("1", "2")
    assert facts["moves"][-1] == facts["champion"]


def test_rehearsal_service_predicts_from_the_champion_with_the_key_and_refuses_without(
    rehearsal: Rehearsal,
) -> None:
    facts = rehearsal.require("service").facts

    prediction = facts["with_key"]
    assert (prediction["model_name"], prediction["model_version"]) == (MODEL, facts["champion"])
    assert facts["without_key"] == 401


def test_rehearsal_service_logs_its_answer_in_the_prediction_log(rehearsal: Rehearsal) -> None:
    # As its own role: INSERT, and SELECT on request_id for the idempotent write (0007)
    facts = rehearsal.require("service").facts

    assert facts["logged"] == [(MODEL, facts["champion"])]


def test_rehearsal_predict_logs_the_champions_prediction_of_every_served_pair(
    rehearsal: Rehearsal,
) -> None:
    step = rehearsal.require("predict")

    # Then the log holds one prediction per served (symbol, target), from the champion
    assert step.facts["logged"] == [(SYMBOL, TARGET, MODEL, step.facts["champion"], "champion")]
    assert "logged 1 prediction(s)" in step.runs[0].output
    # and its heartbeat says so to CloudWatch, which the predict-job-silent alarm watches
    assert step.facts["heartbeat"]["BatchPredictionsLogged"] == 1
    assert step.facts["heartbeat"]["BatchPredictionsSkipped"] == 0


def test_rehearsal_monitoring_page_answers_its_health_check_and_draws_the_symbol(
    rehearsal: Rehearsal,
) -> None:
    facts = rehearsal.require("monitoring").facts

    assert facts["health"] == "ok"
    assert f"{SYMBOL} {TARGET}: price and predictions" in facts["text"]
    assert "Data health" in facts["text"]


def test_rehearsal_score_publishes_the_model_health_metrics(rehearsal: Rehearsal) -> None:
    published = rehearsal.require("score").facts["published"]

    assert published["ScoredPredictions"] == {"Symbol": SYMBOL, "Target": TARGET}
    assert published["FeatureDriftPSI"] == {"Symbol": SYMBOL, "FeatureSet": "v1"}


@pytest.mark.parametrize(
    "step",
    list(ROLES),
)
def test_rehearsal_each_component_logs_in_as_its_own_role_with_a_password_over_tls(
    rehearsal: Rehearsal, step: str
) -> None:
    logins = rehearsal.require(step).logins
    if step == "training":  # the operator's promotion runs on the training task too
        logins |= rehearsal.require("promote").logins
    assert logins == {Login(ROLES[step], "scram-sha-256", tls=True)}


# --- one wrong declaration at a time ------------------------------------------------------------
def renamed(variables: dict[str, str], old: str, new: str) -> dict[str, str]:
    assert old in variables, f"{old} is not declared"
    return {(new if k == old else k): v for k, v in variables.items()}


def dropped(variables: dict[str, str], name: str) -> dict[str, str]:
    assert name in variables, f"{name} is not declared"
    return {k: v for k, v in variables.items() if k != name}


@dataclass(frozen=True)
class Mutation:
    """One declaration changed; the step at which the rehearsal must then fail, and why."""

    change: Callable[[Declared], Declared]
    fails_at: str
    message: str
    fresh: bool = False  # a new world (the change is to what creates state), else a fork


MUTATIONS = {
    "migrate: PRICEBOT_DATABASE_SECRET_ARN renamed": Mutation(
        lambda d: d.task("migrate", environment=renamed(
            d.tasks["migrate"].environment, "PRICEBOT_DATABASE_SECRET_ARN",
            "PRICEBOT_DB_SECRET_ARN")),
        "migrate", r"task migrate: .* exited 1:.*Cannot connect to .*no password supplied",
        fresh=True,
    ),
    "migrate: a command that does not exist": Mutation(
        lambda d: d.task("migrate", command=("db", "migrate")),
        "migrate", r"task migrate: `pricebot db migrate` exited 2:.*No such command 'migrate'",
        fresh=True,
    ),
    "migrate: PRICEBOT_DB_ROLE_SECRETS dropped": Mutation(
        lambda d: d.task("migrate", environment=dropped(
            d.tasks["migrate"].environment, "PRICEBOT_DB_ROLE_SECRETS")),
        "bootstrap", r"task bootstrap: .* exited 1:.*Cannot read the secret .*/db/bootstrap",
        fresh=True,
    ),
    "secrets: the pipeline login's secret not created": Mutation(
        lambda d: d.without_secret(f"{d.name}/db/pipeline"),
        "migrate", r"task migrate: .* exited 1:.*Cannot store a generated value in the secret "
        r"arn:aws:secretsmanager:eu-west-1:123456789012:secrets-db-pipeline",
        fresh=True,
    ),
    "bootstrap: PRICEBOT_DATABASE_SECRET_ARN dropped": Mutation(
        lambda d: d.task("bootstrap", environment=dropped(
            d.tasks["bootstrap"].environment, "PRICEBOT_DATABASE_SECRET_ARN")),
        "bootstrap", r"task bootstrap: .* exited 1:.*Cannot connect to .*no password supplied",
    ),
    "bootstrap: an option that does not exist": Mutation(
        lambda d: d.task("bootstrap", command=("bootstrap", "--history-day", "27")),
        "bootstrap", r"task bootstrap: .* exited 2:.*No such option: --history-day",
    ),
    "ingest: PRICEBOT_DB_HOST renamed": Mutation(
        lambda d: d.function("ingest", environment=renamed(
            d.functions["ingest"].environment, "PRICEBOT_DB_HOST", "PRICEBOT_DATABASE_HOST")),
        "ingest", r"function ingest \(lambdas\.ingest\.handler\.lambda_handler\) failed:.*"
        r"db_host\s+Field required",
    ),
    "transform: a handler that does not exist": Mutation(
        lambda d: d.function("transform", handler="lambdas.transform.handler.handler"),
        "transform", r"function transform .* failed:.*has no attribute 'handler'",
    ),
    "training: the command template misspells an option": Mutation(
        lambda d: replace(d, training_task={**d.training_task, "command": [
            "--trial" if w == "--trials" else w for w in d.training_task["command"]]}),
        "training", r"task training: `pricebot train .*` exited 2:.*No such option: --trial",
    ),
    "service: the image of the job repository": Mutation(
        lambda d: d.task("service", image=d.tasks["score"].image),
        "service", r"task service: the task maps container port 3000, but its image "
        r"\(Dockerfile target job\) exposes no port",
    ),
    "service: the API key secret not injected": Mutation(
        lambda d: d.task("service", secrets=dropped(d.tasks["service"].secrets,
                                                    "PRICEBOT_API_KEYS")),
        # Either the service refuses to start without keys (the Bento requires them), or it
        # answers without one: both stop the rehearsal at the service.
        "service", r"task service: (/predict answered 200 without an API key"
        r"|.* exited 1:.*PRICEBOT_API_KEYS)",
    ),
    "monitoring: PRICEBOT_DATABASE_SECRET_ARN dropped": Mutation(
        lambda d: d.task("monitoring", environment=dropped(
            d.tasks["monitoring"].environment, "PRICEBOT_DATABASE_SECRET_ARN")),
        "monitoring", r"task monitoring: the page shows .*database is unreachable",
    ),
    "predict: PRICEBOT_TARGETS renamed": Mutation(
        # The task then predicts the settings' default target, which has no champion here
        lambda d: d.task("predict", environment=renamed(
            d.tasks["predict"].environment, "PRICEBOT_TARGETS", "PRICEBOT_TARGET")),
        "predict",
        r"task predict: `pricebot predict --publish-metrics` exited 1:.*Nothing could be predicted",
    ),
    "predict: the pipeline's login instead of the service's": Mutation(
        # The pipeline's group may read features but not add predictions: the log never lands
        lambda d: d.task("predict", environment={
            **d.tasks["predict"].environment,
            "PRICEBOT_DATABASE_SECRET_ARN":
                d.tasks["score"].environment["PRICEBOT_DATABASE_SECRET_ARN"]}),
        "predict",
        r"task predict: `pricebot predict --publish-metrics` exited 1:.*did not confirm its write",
    ),
    "predict: --publish-metrics left out": Mutation(
        lambda d: d.task("predict", command=("predict",)),
        "predict", r"task predict: published no heartbeat to CloudWatch",
    ),
    "score: --publish-metrics left out": Mutation(
        lambda d: d.task("score", command=("score",)),
        "score", r"task score: published no metrics to CloudWatch",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    list(MUTATIONS),
)  # fmt: skip
def test_rehearsal_fails_on_one_wrong_declaration(
    case: str, declared: Declared, worlds: Worlds, rehearsal: Rehearsal
) -> None:
    mutation = MUTATIONS[case]
    changed = mutation.change(declared)

    with pytest.raises(RehearsalError, match="(?s)" + mutation.message) as failure:  # noqa: PT012
        if mutation.fresh:
            with worlds(changed) as local:
                Rehearsal(local).require(mutation.fails_at)
        else:
            rehearsal.fork(changed, mutation.fails_at).require(mutation.fails_at)
    assert str(failure.value).startswith(("task " + mutation.fails_at, "function "))
