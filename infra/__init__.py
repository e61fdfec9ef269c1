"""pricebot on AWS, declared with Pulumi.

``__main__.py`` is the program Pulumi runs: it reads the stack configuration once into
:class:`infra.config.StackSettings` and hands it to :func:`infra.stack.build`, which composes the
components under ``infra/components``. Tests call ``build`` with a literal settings object under
Pulumi's mocks, so no test needs the Pulumi CLI or a stack.
"""
