"""The stack's building blocks, each a ``pulumi.ComponentResource`` taking a frozen args dataclass.

Composed by :func:`infra.stack.build`; ``fargate`` is the helper serving, monitoring and
training share.
"""

from infra.components.database import Database, DatabaseArgs
from infra.components.mlflow_server import MlflowServer, MlflowServerArgs
from infra.components.monitoring import Monitoring, MonitoringArgs
from infra.components.network import Network, NetworkArgs
from infra.components.pipeline import Pipeline, PipelineArgs
from infra.components.serving import Serving, ServingArgs
from infra.components.storage import Storage, StorageArgs
from infra.components.training import Training, TrainingArgs

__all__ = [
    "Database",
    "DatabaseArgs",
    "MlflowServer",
    "MlflowServerArgs",
    "Monitoring",
    "MonitoringArgs",
    "Network",
    "NetworkArgs",
    "Pipeline",
    "PipelineArgs",
    "Serving",
    "ServingArgs",
    "Storage",
    "StorageArgs",
    "Training",
    "TrainingArgs",
]
