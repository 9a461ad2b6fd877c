"""The redeploy ledger on its own, in memory and in DynamoDB (moto): claims, refusals,
confirmations, releases, expired leases, and a claim whose answer was lost."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestration.state.redeploy_ledger import (
    LEASE_MARGIN,
    MAX_LEASE,
    PAIR_WINDOW,
    Claim,
    DynamoDbRedeployLedger,
    NewValue,
    RedeployLedger,
    Refusal,
)
from tests.aws_fakes import LoseFirstAnswer
from tests.integration.conftest import NOW, Backend

pytestmark = pytest.mark.integration

SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
V1 = NewValue(SECRET, "v1")
V2 = NewValue(SECRET, "v2")
OLD_PRIMARY = NOW - timedelta(days=3)


@pytest.fixture
def ledger(backend: Backend) -> RedeployLedger:
    """The ledger of each backend (``backend`` runs memory, then DynamoDB in moto)."""
    return backend.ledger()


def granted(result: Claim | Refusal) -> Claim:
    assert isinstance(result, Claim), result
    return result


def test_a_held_claim_refuses_the_same_change(ledger):
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))

    again = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=1))

    assert again == Refusal(
        "another rotor invocation is redeploying it for this value (v1)", held_elsewhere=True
    )


def test_other_changes_are_independent(ledger):
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    granted(ledger.claim(SERVICE, V2, OLD_PRIMARY, NOW))


def test_a_confirmed_change_is_refused_while_its_deployment_is_the_newest(ledger):
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    deployed = NOW + timedelta(milliseconds=250)
    ledger.confirm(claim, deployed)

    # A later delivery that saw the old PRIMARY, or rotor's own new one: refused.
    stale_view = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(minutes=5))
    own_view = ledger.claim(SERVICE, V1, deployed, NOW + timedelta(minutes=5))

    assert isinstance(stale_view, Refusal) and not stale_view.held_elsewhere
    assert stale_view.reason.startswith("already redeployed by rotor for this value (v1) at ")
    assert isinstance(own_view, Refusal) and not own_view.held_elsewhere


def test_a_rollback_to_an_earlier_value_is_redeployed(ledger):
    # v1, then v2 (a newer deployment), then AWSCURRENT moved back to v1.
    first = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW - timedelta(hours=2)))
    ledger.confirm(first, NOW - timedelta(hours=2))
    second = granted(ledger.claim(SERVICE, V2, NOW - timedelta(hours=2), NOW - timedelta(hours=1)))
    ledger.confirm(second, NOW - timedelta(hours=1))

    rollback = ledger.claim(SERVICE, V1, NOW - timedelta(hours=1), NOW)

    granted(rollback)


def test_release_gives_the_claim_back(ledger):
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))

    ledger.release(claim)

    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=1)))


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_undo_it(ledger):
    stuck = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))  # its Lambda was killed

    later = NOW + MAX_LEASE + LEASE_MARGIN + timedelta(seconds=1)
    taken = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, later))
    ledger.release(stuck)  # too late: no longer its claim
    ledger.confirm(stuck, later)

    again = ledger.claim(SERVICE, V1, OLD_PRIMARY, later + timedelta(seconds=1))
    assert isinstance(again, Refusal) and again.held_elsewhere
    assert taken.token != stuck.token


def test_the_lease_lasts_as_long_as_the_claimant_may_run(ledger):
    # A Lambda with 40 s left: once it is surely gone (plus a margin), its claim expires, so
    # Lambda's retry of the event a minute later can redeploy.
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW, lease=timedelta(seconds=40)))

    during = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=60))
    after = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=71))

    assert isinstance(during, Refusal) and during.held_elsewhere
    granted(after)


def test_unknown_primary_age_never_blocks_a_redeploy(ledger):
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    ledger.confirm(claim, NOW)

    granted(ledger.claim(SERVICE, V1, None, NOW + timedelta(minutes=1)))


def test_dynamodb_claim_whose_answer_was_lost_is_still_ours(clients, retry, state_table):
    ledger = DynamoDbRedeployLedger(clients.dynamodb, state_table, retry)
    # The write lands in moto, then the answer is lost: the retry meets its own claim.
    lost = LoseFirstAnswer("PutItem").attach(clients.dynamodb)

    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))

    assert lost.lost
    item = clients.dynamodb.get_item(
        TableName=state_table, Key={"pk": {"S": f"redeploy#{SERVICE}#{SECRET}@v1"}}
    )["Item"]
    assert item["owner"]["S"] == claim.token
    assert item["state"]["S"] == "pending"


def test_times_keep_microseconds_so_a_deployment_made_just_after_rotors_is_seen(ledger):
    # rotor's deployment at X; another one half a millisecond later (a newer one): the ledger
    # must not take it for rotor's own (milliseconds would make them equal).
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    deployed = NOW + timedelta(milliseconds=250, microseconds=100)
    ledger.confirm(claim, deployed)

    granted(ledger.claim(SERVICE, V1, deployed + timedelta(microseconds=500), NOW + timedelta(1)))


def test_a_pending_claim_does_not_block_once_the_service_was_deployed_since(ledger):
    # The holder deployed but could not record it (its confirm was throttled away): a later
    # delivery, which sees a deployment newer than the claim, does not wait out the lease.
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))

    later = ledger.claim(SERVICE, V1, NOW + timedelta(seconds=2), NOW + timedelta(minutes=1))

    assert isinstance(later, Refusal) and not later.held_elsewhere
    assert later.reason.startswith("already redeployed for this value (v1)")


UNDESCRIBED = "arn:aws:secretsmanager:us-east-1:210987654321:secret:shared/db-Sh4r3d"


@pytest.mark.parametrize(
    ("later", "refused"),
    [
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + PAIR_WINDOW), True, id="paired"),
        pytest.param(NewValue(UNDESCRIBED, "v1", False, NOW), True, id="same-version"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + 2 * PAIR_WINDOW), False, id="later"),
        pytest.param(NewValue(UNDESCRIBED, "v2", False, NOW), False, id="other-version"),
    ],
)
def test_deliveries_of_one_rotation_of_an_undescribable_secret_are_paired(ledger, later, refused):
    # The label event (with a version) was handled first; rotor deployed at NOW + 2 s.
    label = NewValue(UNDESCRIBED, "v1", described=False, became_current_at=NOW)
    claim = granted(ledger.claim(SERVICE, label, OLD_PRIMARY, NOW + timedelta(seconds=1)))
    ledger.confirm(claim, NOW + timedelta(seconds=2))

    answer = ledger.claim(SERVICE, later, NOW + timedelta(seconds=2), NOW + timedelta(minutes=3))

    if refused:
        assert isinstance(answer, Refusal) and not answer.held_elsewhere
        assert answer.reason.startswith("already redeployed by rotor for this value")
    else:
        granted(answer)
