"""Use case: keep the consumer index in step with the ECS calls that change a service."""
