"""The redeploy ledger on its own, in memory and in DynamoDB (moto): claims, refusals,
confirmations, releases, expired leases, and a claim whose answer was lost."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestration.state.redeploy_ledger import (
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
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    assert (claim.service_arn, claim.change, claim.claimed_at) == (SERVICE, V1, NOW)

    again = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=1))

    assert again == Refusal(
        "another rotor invocation is redeploying it for this value (v1)", held_elsewhere=True
    )


def test_other_changes_are_independent(ledger):
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    granted(ledger.claim(SERVICE, V2, OLD_PRIMARY, NOW))

    # ... and each is held on its own: neither claim took the other's place.
    for change in (V1, V2):
        again = ledger.claim(SERVICE, change, OLD_PRIMARY, NOW + timedelta(seconds=1))
        assert isinstance(again, Refusal) and again.held_elsewhere, change


def test_a_confirmed_change_is_refused_while_its_deployment_is_the_newest(ledger):
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    deployed = NOW + timedelta(milliseconds=250)
    assert ledger.confirm(claim, deployed) is True

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

    # v2's deployment is the newest: v2 again is refused (the ledger does refuse) ...
    v2_again = ledger.claim(SERVICE, V2, NOW - timedelta(hours=1), NOW)
    assert isinstance(v2_again, Refusal) and not v2_again.held_elsewhere
    # ... while v1, whose deployment v2's replaced, is redeployed.
    rollback = ledger.claim(SERVICE, V1, NOW - timedelta(hours=1), NOW)

    granted(rollback)


def test_release_gives_the_claim_back(ledger):
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    held = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW)
    assert isinstance(held, Refusal) and held.held_elsewhere

    ledger.release(claim)

    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(seconds=1)))


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_undo_it(ledger):
    stuck = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))  # its Lambda was killed

    later = NOW + timedelta(minutes=15, seconds=31)  # the longest lease and its margin
    taken = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, later))
    assert ledger.release(stuck) is False  # too late: no longer its claim
    assert ledger.confirm(stuck, later) is False

    again = ledger.claim(SERVICE, V1, OLD_PRIMARY, later + timedelta(seconds=1))
    assert isinstance(again, Refusal) and again.held_elsewhere
    assert taken.token != stuck.token


@pytest.mark.parametrize("lease", [None, timedelta(hours=2)], ids=["default", "asked-for-2h"])
def test_no_claim_is_held_longer_than_a_lambda_runs_plus_a_margin(ledger, lease):
    # A Lambda runs at most 15 minutes: a claim whose holder died is taken over 15 min 30 s
    # after it was made, however long a lease its claimant asked for. In seconds, not in the
    # ledger's own constants: a lease grown to hours would hold a redeploy up that long.
    asked = {} if lease is None else {"lease": lease}
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW, **asked))

    still_held = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(minutes=15, seconds=29))
    taken_over = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(minutes=15, seconds=31))

    assert isinstance(still_held, Refusal) and still_held.held_elsewhere
    granted(taken_over)


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
    known = ledger.claim(SERVICE, V1, NOW, NOW + timedelta(minutes=1))
    assert isinstance(known, Refusal) and not known.held_elsewhere  # the same, age known

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
    own = ledger.claim(SERVICE, V1, deployed, NOW + timedelta(1))
    assert isinstance(own, Refusal) and not own.held_elsewhere  # rotor's own: to the µs

    granted(ledger.claim(SERVICE, V1, deployed + timedelta(microseconds=500), NOW + timedelta(1)))


def test_a_pending_claim_does_not_block_once_the_service_was_deployed_since(ledger):
    # The holder deployed but could not record it (its confirm was throttled away): a later
    # delivery, which sees a deployment newer than the claim, does not wait out the lease.
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))

    later = ledger.claim(SERVICE, V1, NOW + timedelta(seconds=2), NOW + timedelta(minutes=1))
    # A deployment made at the very moment of the claim counts too.
    same_moment = ledger.claim(SERVICE, V1, NOW, NOW + timedelta(minutes=1))

    assert isinstance(later, Refusal) and not later.held_elsewhere
    assert later.reason.startswith("already redeployed for this value (v1)")
    assert isinstance(same_moment, Refusal) and not same_moment.held_elsewhere


def seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


UNDESCRIBED = "arn:aws:secretsmanager:us-east-1:210987654321:secret:shared/db-Sh4r3d"


@pytest.mark.parametrize(
    ("later", "refused"),
    [
        # Times in seconds, not in the ledger's PAIR_WINDOW: a window that grew to swallow a
        # real second rotation (or shrank below the seconds between two deliveries) fails here.
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + seconds(5)), True, id="5s-after"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW - seconds(5)), True, id="5s-before"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + seconds(120)), True, id="paired"),
        pytest.param(NewValue(UNDESCRIBED, "v1", False, NOW), True, id="same-version"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + seconds(121)), False, id="121s"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW + seconds(300)), False, id="later"),
        pytest.param(NewValue(UNDESCRIBED, None, False, NOW - seconds(300)), False, id="earlier"),
        pytest.param(NewValue(UNDESCRIBED, "v2", False, NOW), False, id="other-version"),
        # A version on both sides decides, whatever the times.
        pytest.param(NewValue(UNDESCRIBED, "v1", False, NOW + seconds(300)), True, id="v1-later"),
        pytest.param(NewValue(UNDESCRIBED, "v2", False, NOW + seconds(5)), False, id="v2-close"),
        # Neither a version to compare nor a time: not known to be the same rotation.
        pytest.param(NewValue(UNDESCRIBED, None, False, None), False, id="no-time"),
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


def test_a_confirmed_claim_is_kept_two_days(ledger):
    # Duplicate deliveries of one rotation arrive within hours: the record outlives them by
    # far, then goes (the TTL). In days, not in the ledger's KEEP_FOR.
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    ledger.confirm(claim, NOW + timedelta(seconds=1))

    day_later = ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(days=1, hours=23))
    assert isinstance(day_later, Refusal) and not day_later.held_elsewhere
    granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW + timedelta(days=2, seconds=1)))


def test_the_items_ttl_is_two_days_after_the_claim(clients, retry, state_table):
    ledger = DynamoDbRedeployLedger(clients.dynamodb, state_table, retry)
    claim = granted(ledger.claim(SERVICE, V1, OLD_PRIMARY, NOW))
    ledger.confirm(claim, NOW + timedelta(seconds=1))

    item = clients.dynamodb.get_item(
        TableName=state_table, Key={"pk": {"S": f"redeploy#{SERVICE}#{SECRET}@v1"}}
    )["Item"]
    assert int(item["expires_at"]["N"]) == int(NOW.timestamp()) + 2 * 24 * 3600
    # The attributes the class documents (items written by one version are read by the next).
    assert int(item["deployment_created_at"]["N"]) == int(NOW.timestamp() + 1) * 10**6
    assert (item["service"]["S"], item["secret"]["S"], item["version"]["S"]) == (
        SERVICE,
        SECRET,
        "v1",
    )
