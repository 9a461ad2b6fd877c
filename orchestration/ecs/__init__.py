"""ECS: finding the services that reference a secret, and forcing their new deployments."""
