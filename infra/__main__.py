"""The Pulumi program: read the stack configuration once, declare the stack, export outputs."""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this directory as a script, so the repository root (home of the ``infra`` package)
# is not on the import path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi
from pulumi.runtime.config import get_config_env

from infra.config import SECRET_KEYS, config_keys, load_settings
from infra.stack import StackSecrets, build

config = pulumi.Config()  # the project's namespace, pricebot:
values = {key: config.get(key) for key in config_keys() if config.get(key) is not None}
# Keys set but unknown (a typo would otherwise deploy the default): load_settings refuses them.
prefix = f"{pulumi.get_project()}:"
values |= {
    k[len(prefix) :]: v
    for k, v in get_config_env().items()
    if k.startswith(prefix) and k[len(prefix) :] not in SECRET_KEYS
}
settings = load_settings(
    values, region=pulumi.Config("aws").get("region"), stack=pulumi.get_stack()
)
outputs = build(settings, StackSecrets(oidc_client_secret=config.get_secret("oidcClientSecret")))

pulumi.export("api_url", outputs.api_url)
pulumi.export("monitoring_url", outputs.monitoring_url)
pulumi.export("monitoring_routed", outputs.monitoring_routed)
pulumi.export("mlflow_url", outputs.mlflow_url)
pulumi.export("database_endpoint", outputs.database_endpoint)
pulumi.export("database_secret_arn", outputs.database_secret_arn)
pulumi.export("api_keys_secret_arn", outputs.api_keys_secret_arn)
pulumi.export("mlflow_instance_id", outputs.mlflow_instance_id)
pulumi.export("bucket_name", outputs.bucket_name)
pulumi.export("repository_urls", outputs.repository_urls)
pulumi.export("training_task_parameter", outputs.training_task_parameter)
pulumi.export("alb_security_group_id", outputs.alb_security_group_id)
pulumi.export("cluster_name", outputs.cluster_name)
pulumi.export("service_names", outputs.service_names)
pulumi.export("target_group_arns", outputs.target_group_arns)
pulumi.export("jobs", outputs.jobs)
pulumi.export("migrate_targets", outputs.migrate_targets)
