"""Task definition summaries in the state table: a cold container asks ECS only for revisions
no container has summarised yet."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestration.runtime import Runtime
from orchestration.secrets.references import SecretIdentity
from orchestration.settings import Settings
from tests.aws_fakes import FailFor
from tests.integration.conftest import NOW

pytestmark = pytest.mark.integration


@pytest.fixture
def three_revisions(ecs_world):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    with_db = ecs_world.task_definition(secrets=[db])
    pinned = ecs_world.task_definition(secrets=[f"{db}:password:AWSPREVIOUS:"])
    plain = ecs_world.task_definition(secrets=["/plain/ssm/parameter"])
    for name, task_definition in (("api", with_db), ("worker", with_db), ("old", pinned)):
        ecs_world.service("prod", name, task_definition)
    ecs_world.service("prod", "web", plain)
    return SecretIdentity.from_full_arn(db)


def container(clients, retry, table):
    """A new Lambda container: a runtime of its own (empty memory cache), the shared table."""
    return Runtime.build(clients, Settings(state_table=table), retry=retry)


def test_a_cold_container_reads_only_the_revisions_it_has_never_seen(
    clients, retry, ecs_world, ecs_calls, state_table, three_revisions
):
    first = container(clients, retry, state_table).discovery().consumers(three_revisions)
    first_reads = ecs_calls.counts["DescribeTaskDefinition"]
    second = container(clients, retry, state_table).discovery().consumers(three_revisions)
    second_reads = ecs_calls.counts["DescribeTaskDefinition"] - first_reads
    # A new revision: only it is read.
    db = three_revisions.arn
    ecs_world.ecs.update_service(
        cluster="prod", service="api", taskDefinition=ecs_world.task_definition(secrets=[db])
    )
    third = container(clients, retry, state_table).discovery().consumers(three_revisions)
    third_reads = ecs_calls.counts["DescribeTaskDefinition"] - first_reads - second_reads

    assert (first_reads, second_reads, third_reads) == (3, 0, 1)
    assert sorted(c.service.name for c in first) == ["api", "old", "worker"]
    assert [(c.service.name, c.pinned) for c in second] == [
        (c.service.name, c.pinned) for c in first
    ]
    assert sorted(c.service.name for c in third) == ["api", "old", "worker"]
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert sorted(i["pk"]["S"].split(":task-definition/")[-1] for i in items) == [
        "family-1:1",
        "family-2:1",
        "family-3:1",
        "family-4:1",
    ]
    # Kept 30 days (revisions never change; a table of every revision ever seen would grow).
    thirty_days = int((NOW + timedelta(days=30)).timestamp())
    assert all(thirty_days <= int(i["expires_at"]["N"]) <= thirty_days + 60 for i in items)


def test_a_table_rotor_cannot_read_falls_back_to_ecs(
    clients, retry, ecs_world, ecs_calls, state_table, three_revisions
):
    reads = FailFor("GetItem", "AccessDeniedException").attach(clients.dynamodb)
    writes = FailFor("PutItem", "AccessDeniedException").attach(clients.dynamodb)

    found = container(clients, retry, state_table).discovery().consumers(three_revisions)

    assert sorted(c.service.name for c in found) == ["api", "old", "worker"]
    assert ecs_calls.counts["DescribeTaskDefinition"] == 3
    assert (reads.hits, writes.hits) == (3, 3)
