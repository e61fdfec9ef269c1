"""AWS Lambda adapters: Powertools handlers that make one call into the core each."""
