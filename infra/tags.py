"""Tags on every taggable resource, applied once for the whole stack.

A stack transformation rather than the provider's ``default_tags``: the tags then appear in each
resource's own inputs, so ``pulumi preview`` shows them and the tests can check them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import cache

import pulumi

# Resources whose ``tags`` input is not a plain key -> value map.
_NOT_A_TAG_MAP = frozenset({"aws:autoscaling/group:Group"})


@cache
def accepts_tags(resource_class: type) -> bool:
    """Whether a pulumi-aws resource class has a ``tags`` input (judged by its signature)."""
    init = getattr(resource_class, "_internal_init", None)
    return init is not None and "tags" in inspect.signature(init).parameters


def is_taggable(resource: pulumi.Resource, type_: str) -> bool:
    return (
        isinstance(resource, pulumi.CustomResource)
        and type_.startswith("aws:")
        and type_ not in _NOT_A_TAG_MAP
        and accepts_tags(type(resource))
    )


def tag_transformation(tags: Mapping[str, str]) -> pulumi.ResourceTransformation:
    """A transformation merging ``tags`` under each taggable resource's own tags."""
    defaults = dict(tags)

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
        if not is_taggable(args.resource, args.type_):
            return None
        props = dict(args.props)
        own = props.get("tags")
        props["tags"] = pulumi.Output.from_input(own).apply(
            lambda given: {**defaults, **(given or {})}
        )
        return pulumi.ResourceTransformationResult(props=props, opts=args.opts)

    return transform


def register_stack_tags(tags: Mapping[str, str]) -> None:
    """Tag everything declared after this call (call it before building any component)."""
    pulumi.runtime.register_stack_transformation(tag_transformation(tags))


def boundary_transformation(boundary_arn: str) -> pulumi.ResourceTransformation:
    """A transformation putting the permissions boundary on every IAM role.

    The deploy role may create and change only roles that carry this boundary
    (infra/bootstrap_oidc), so a role the stack declares without it would fail the deploy.
    """

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
        if args.type_ != "aws:iam/role:Role":
            return None
        props = {**args.props, "permissions_boundary": boundary_arn}
        return pulumi.ResourceTransformationResult(props=props, opts=args.opts)

    return transform


def register_permissions_boundary(boundary_arn: str) -> None:
    """Bound every role declared after this call."""
    pulumi.runtime.register_stack_transformation(boundary_transformation(boundary_arn))
