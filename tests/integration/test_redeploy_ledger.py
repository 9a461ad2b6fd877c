"""The redeploy ledger on its own: claims, refusals, releases, and a claim whose answer was lost."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from orchestration.redeploy_ledger import Claim, DynamoDbRedeployLedger, MemoryRedeployLedger
from tests.integration.conftest import NOW

pytestmark = pytest.mark.integration

SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
V1 = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd@v1"
V2 = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd@v2"


@pytest.fixture(params=["memory", "dynamodb"])
def ledger(request, clients, retry):
    if request.param == "memory":
        return MemoryRedeployLedger()
    table = request.getfixturevalue("state_table")
    return DynamoDbRedeployLedger(clients.dynamodb, table, retry)


def test_first_claim_is_granted_and_the_same_change_is_then_refused(ledger):
    rotated = NOW - timedelta(minutes=1)

    first = ledger.claim(SERVICE, V1, rotated, NOW)
    # Even an event that says the value changed later than rotor's deployment is the same change.
    again = ledger.claim(SERVICE, V1, NOW + timedelta(minutes=5), NOW + timedelta(seconds=1))

    assert isinstance(first, Claim)
    assert again == "already redeployed by rotor for this value (v1)"


def test_a_deployment_at_or_after_the_new_value_refuses_other_changes_too(ledger):
    assert isinstance(ledger.claim(SERVICE, V1, NOW - timedelta(minutes=1), NOW), Claim)

    coalesced = ledger.claim(SERVICE, V2, NOW - timedelta(seconds=30), NOW + timedelta(seconds=1))
    later = ledger.claim(SERVICE, V2, NOW + timedelta(minutes=1), NOW + timedelta(minutes=1))

    assert isinstance(coalesced, str) and coalesced.startswith("already fresh: rotor redeployed")
    assert isinstance(later, Claim)  # a newer value than rotor's deployment: redeploy again


def test_release_gives_the_claim_back(ledger):
    claim = ledger.claim(SERVICE, V1, NOW - timedelta(minutes=1), NOW)
    assert isinstance(claim, Claim)

    ledger.release(claim)

    assert isinstance(ledger.claim(SERVICE, V1, NOW - timedelta(minutes=1), NOW), Claim)


def test_release_after_an_earlier_deployment_restores_it(ledger):
    old = ledger.claim(SERVICE, V1, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert isinstance(old, Claim)
    new = ledger.claim(SERVICE, V2, NOW - timedelta(minutes=1), NOW)
    assert isinstance(new, Claim)

    ledger.release(new)

    # V2 may be claimed again; V1 is still recorded as done.
    assert isinstance(ledger.claim(SERVICE, V2, NOW - timedelta(minutes=1), NOW), Claim)
    assert isinstance(ledger.claim(SERVICE, V1, NOW - timedelta(hours=2), NOW), str)


def test_dynamodb_claim_whose_answer_was_lost_is_still_ours(clients, retry, state_table):
    ledger = DynamoDbRedeployLedger(clients.dynamodb, state_table, retry)
    lost = {"done": False}

    def lose_the_first_answer(**_: Any) -> None:
        if not lost["done"]:
            lost["done"] = True
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")

    # The write lands in moto, then the answer is lost: the retry meets its own claim.
    clients.dynamodb.meta.events.register("after-call.dynamodb.UpdateItem", lose_the_first_answer)

    claim = ledger.claim(SERVICE, V1, NOW - timedelta(minutes=1), NOW)

    assert isinstance(claim, Claim)
    assert lost["done"]
    item = clients.dynamodb.get_item(
        TableName=state_table, Key={"pk": {"S": f"redeploy#{SERVICE}"}}
    )
    assert item["Item"]["owner"]["S"] == claim.token
    assert item["Item"]["changes"]["SS"] == [V1]
