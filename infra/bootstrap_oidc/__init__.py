"""A tiny, separate Pulumi project: the GitHub OpenID Connect provider and the two roles the
workflows assume (deploy, retrain). Run once per AWS account, before the first deploy; see
docs/ci.md."""
