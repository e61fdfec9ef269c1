"""The stack's building blocks, each a ``pulumi.ComponentResource`` taking a frozen args dataclass.

Composed by :func:`infra.stack.build`; ``fargate`` is the helper serving, monitoring and the
jobs share.
"""

from infra.components.alarms import Alarms, AlarmsArgs
from infra.components.database import Database, DatabaseArgs
from infra.components.jobs import Jobs, JobsArgs
from infra.components.mlflow_server import MlflowServer, MlflowServerArgs
from infra.components.monitoring import Monitoring, MonitoringArgs, OidcProvider
from infra.components.network import Network, NetworkArgs
from infra.components.pipeline import Pipeline, PipelineArgs
from infra.components.secrets import Secrets, SecretsArgs
from infra.components.serving import Serving, ServingArgs
from infra.components.storage import Storage, StorageArgs

__all__ = [
    "Alarms",
    "AlarmsArgs",
    "Database",
    "DatabaseArgs",
    "Jobs",
    "JobsArgs",
    "MlflowServer",
    "MlflowServerArgs",
    "Monitoring",
    "MonitoringArgs",
    "Network",
    "NetworkArgs",
    "OidcProvider",
    "Pipeline",
    "PipelineArgs",
    "Secrets",
    "SecretsArgs",
    "Serving",
    "ServingArgs",
    "Storage",
    "StorageArgs",
]
