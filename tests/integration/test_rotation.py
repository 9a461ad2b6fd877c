"""Rotation → redeploy against moto: one test per verdict, duplicates, throttling, failures.

Every test reads the result back from moto (PRIMARY deployment id / createdAt through
DescribeServices, UpdateService calls that reached moto's backend) besides the outcome.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.cli.world import backdate_deployment
from orchestration.dispatch import process
from orchestration.events.classification import EventKind, classify
from orchestration.outcome import EventOutcome
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import ApiCalls, ErrorInjector, FailFor
from tests.conftest import ACCOUNT, REGION, load_event, make_runtime
from tests.integration.conftest import (
    FRESH,
    OTHER_ACCOUNT,
    ROTATED_AT,
    EcsWorld,
    changed,
    iso,
    label_event,
    put_value_event,
    rotation_event,
    update_calls_per_service,
)

pytestmark = pytest.mark.integration


def run(event: dict[str, Any], runtime: Runtime) -> EventOutcome:
    return process(classify(event), runtime)


def secret_arn_in(account: str, name: str, suffix: str = "Ab12Cd", region: str = REGION) -> str:
    return f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-{suffix}"


def partial(arn: str) -> str:
    """The partial ARN (no -XXXXXX suffix) of a full secret ARN."""
    return arn.rsplit("-", 1)[0]


def skipped_reasons(outcome: EventOutcome) -> dict[str, str]:
    return {s.service.rsplit("/", 1)[-1]: s.reason for s in outcome.skipped}


def names(arns: list[str]) -> set[str]:
    return {arn.rsplit("/", 1)[-1] for arn in arns}


def assert_redeployed_once(
    ecs_world: EcsWorld,
    ecs_calls: ApiCalls,
    before: dict[str, dict[str, Any]],
    expected: set[str],
) -> None:
    """``expected`` (cluster/service) got exactly one new deployment; the rest none."""
    after = ecs_world.primaries(tuple(key.split("/", 1)) for key in before)
    assert changed(before, after) == expected
    for key in expected:
        assert after[key]["createdAt"] >= ROTATED_AT
    for key in set(before) - expected:
        assert after[key]["createdAt"] == before[key]["createdAt"]
    expected_names = {key.split("/", 1)[1] for key in expected}
    assert ecs_world.updates_reached_moto == Counter(dict.fromkeys(expected_names, 1))
    sent = ecs_calls.of("UpdateService")
    assert update_calls_per_service(sent) == Counter(dict.fromkeys(expected_names, 1))
    assert all(params["forceNewDeployment"] is True for params in sent)


# --- verdicts ----------------------------------------------------------------------------


def test_unpinned_stale_consumers_are_redeployed_once(ecs_world, ecs_calls, runtime):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.cluster("batch")
    forms = {
        "full-json-key": ecs_world.task_definition(secrets=[f"{db}:password::"]),
        "full-bare": ecs_world.task_definition(secrets=[db]),
        "partial": ecs_world.task_definition(secrets=[partial(db)]),
        "awscurrent": ecs_world.task_definition(secrets=[f"{db}:password:AWSCURRENT:"]),
        "passthrough": ecs_world.task_definition(secrets=["/aws/reference/secretsmanager/prod/db"]),
        "log-options": ecs_world.task_definition(secret_options=[db]),
        "registry": ecs_world.task_definition(repository_credentials="prod/db"),
    }
    for name, task_definition in forms.items():
        ecs_world.service("prod", name, task_definition)
    ecs_world.service("batch", "nightly", forms["partial"], desired_count=2)
    bystander = ecs_world.task_definition(secrets=["/prod/plain-ssm-parameter"])
    ecs_world.service("prod", "bystander", bystander)
    before = ecs_world.primaries(
        [("prod", n) for n in [*forms, "bystander"]] + [("batch", "nightly")]
    )

    outcome = run(rotation_event(db), runtime)

    expected = {f"prod/{n}" for n in forms} | {"batch/nightly"}
    assert names(outcome.redeployed) == {k.split("/")[1] for k in expected}
    assert outcome.failed == [] and outcome.skipped == []
    assert outcome.secret == db
    assert outcome.metrics["ConsumersFound"] == len(expected)
    assert outcome.metrics["RedeploysStarted"] == len(expected)
    assert_redeployed_once(ecs_world, ecs_calls, before, expected)


@pytest.mark.parametrize(
    ("selector", "pin"),
    [
        (":password:AWSPREVIOUS:", "stage AWSPREVIOUS"),
        ("::AWSPREVIOUS:", "stage AWSPREVIOUS"),
        (":password::0b6a1c2e-1f2d-4c6b-9a3e-5d7f8e9a0b1c", "version id 0b6a1c2e"),
        ("::MYLABEL:", "stage MYLABEL"),
    ],
)
def test_pinned_reference_is_not_touched(ecs_world, ecs_calls, runtime, selector, pin):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "pinned", ecs_world.task_definition(secrets=[db + selector]))
    ecs_world.service("prod", "current", ecs_world.task_definition(secrets=[db]))
    # One pinned and one unpinned reference to the same secret: the unpinned one wins.
    mixed = ecs_world.task_definition(secrets=[db + selector, f"{db}:password::"])
    ecs_world.service("prod", "mixed", mixed)
    before = ecs_world.primaries([("prod", "pinned"), ("prod", "current"), ("prod", "mixed")])

    outcome = run(rotation_event(db), runtime)

    reasons = skipped_reasons(outcome)
    assert set(reasons) == {"pinned"}
    assert reasons["pinned"].startswith("pinned")
    assert pin in reasons["pinned"]
    assert names(outcome.redeployed) == {"current", "mixed"}
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/current", "prod/mixed"})


def test_opted_out_service_is_not_touched(ecs_world, ecs_calls, runtime):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    task_definition = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "opted-out", task_definition, tags={"rotor:redeploy": "false"})
    ecs_world.service("prod", "shouting", task_definition, tags={"rotor:redeploy": "FALSE"})
    ecs_world.service("prod", "opted-in", task_definition, tags={"rotor:redeploy": "true"})
    ecs_world.service("prod", "untagged", task_definition, tags={"team": "payments"})
    services = ["opted-out", "shouting", "opted-in", "untagged"]
    before = ecs_world.primaries(("prod", s) for s in services)

    outcome = run(rotation_event(db), runtime)

    reasons = skipped_reasons(outcome)
    assert set(reasons) == {"opted-out", "shouting"}
    assert all("opted out" in r and "rotor:redeploy=false" in r for r in reasons.values())
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/opted-in", "prod/untagged"})


def test_opt_in_mode_redeploys_only_services_tagged_true(ecs_world, ecs_calls, clients, retry):
    runtime = make_runtime(clients, retry, Settings(opt_in=True))
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    task_definition = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "opted-in", task_definition, tags={"rotor:redeploy": "true"})
    ecs_world.service("prod", "also-in", task_definition, tags={"rotor:redeploy": " True "})
    ecs_world.service("prod", "untagged", task_definition)
    ecs_world.service("prod", "opted-out", task_definition, tags={"rotor:redeploy": "false"})
    ecs_world.service("prod", "other-value", task_definition, tags={"rotor:redeploy": "maybe"})
    services = ["opted-in", "also-in", "untagged", "opted-out", "other-value"]
    before = ecs_world.primaries(("prod", s) for s in services)

    outcome = run(rotation_event(db), runtime)

    reasons = skipped_reasons(outcome)
    assert set(reasons) == {"untagged", "opted-out", "other-value"}
    assert "not opted in" in reasons["untagged"]
    assert "not opted in" in reasons["other-value"]
    assert "opted out" in reasons["opted-out"]
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/opted-in", "prod/also-in"})


def test_already_fresh_service_is_not_touched(ecs_world, ecs_calls, runtime):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    task_definition = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "fresh", task_definition, deployed_at=FRESH)
    ecs_world.service(
        "prod", "next-second", task_definition, deployed_at=ROTATED_AT + timedelta(seconds=1)
    )
    # Event times are whole seconds: the value may have moved late in that very second, so a
    # deployment made within it may hold the old value.
    ecs_world.service("prod", "same-second", task_definition, deployed_at=ROTATED_AT)
    ecs_world.service("prod", "stale", task_definition)
    names_ = ("fresh", "next-second", "same-second", "stale")
    before = ecs_world.primaries(("prod", s) for s in names_)

    outcome = run(rotation_event(db), runtime)

    reasons = skipped_reasons(outcome)
    assert set(reasons) == {"fresh", "next-second"}
    assert all(r.startswith("already fresh") for r in reasons.values())
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/stale", "prod/same-second"})


def test_inactive_draining_and_scaled_to_zero_services_are_not_touched(
    ecs_world, ecs_calls, runtime
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    task_definition = ecs_world.task_definition(secrets=[db])
    for name in ("deleted", "draining", "zero", "running"):
        ecs_world.service("prod", name, task_definition, desired_count=0 if name == "zero" else 2)
    ecs_world.ecs.delete_service(cluster="prod", service="deleted", force=True)
    ecs_world.backend.services["prod:draining"].status = "DRAINING"
    before = ecs_world.primaries(("prod", s) for s in ("deleted", "draining", "zero", "running"))
    (deleted,) = ecs_world.ecs.describe_services(cluster="prod", services=["deleted"])["services"]
    assert deleted["status"] == "INACTIVE"

    outcome = run(rotation_event(db), runtime)

    reasons = skipped_reasons(outcome)
    assert reasons["draining"] == "service is DRAINING, not ACTIVE"
    assert reasons["zero"].startswith("desired count is 0")
    # AWS stops listing a deleted service; moto still lists it as INACTIVE. Either way: untouched.
    inactive = "service is INACTIVE, not ACTIVE"
    assert reasons.get("deleted", inactive) == inactive
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/running"})


def test_look_alike_secrets_are_never_touched(ecs_world, ecs_calls, runtime):
    db = ecs_world.secret("prod/db")
    db_admin = ecs_world.secret("prod/db-admin")
    api = ecs_world.secret("prod/api")
    api_signer = ecs_world.secret("prod/api-signer")
    ecs_world.cluster("prod")
    other_account_db = secret_arn_in(OTHER_ACCOUNT, "prod/db")
    other_region_db = secret_arn_in(ACCOUNT, "prod/db", region="us-west-2")
    china_db = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db-Ab12Cd"
    tds = {
        "db": ecs_world.task_definition(secrets=[f"{db}:password::"]),
        "db-admin-full": ecs_world.task_definition(secrets=[f"{db_admin}:password::"]),
        "db-admin-partial": ecs_world.task_definition(secrets=[partial(db_admin)]),
        "db-admin-passthrough": ecs_world.task_definition(
            secrets=["/aws/reference/secretsmanager/prod/db-admin"]
        ),
        "db-other-account": ecs_world.task_definition(secrets=[f"{other_account_db}:password::"]),
        "db-other-region": ecs_world.task_definition(secrets=[other_region_db]),
        "db-other-partition": ecs_world.task_definition(secrets=[china_db]),
        "api": ecs_world.task_definition(secrets=[api]),
        "api-bare": ecs_world.task_definition(repository_credentials="prod/api"),
        "api-signer-full": ecs_world.task_definition(secret_options=[api_signer]),
        "api-signer-bare": ecs_world.task_definition(repository_credentials="prod/api-signer"),
        "api-signer-partial": ecs_world.task_definition(secrets=[partial(api_signer)]),
    }
    for name, task_definition in tds.items():
        ecs_world.service("prod", name, task_definition)
    everyone = [("prod", name) for name in tds]

    expectations = [
        (db, {"db"}),
        (api, {"api", "api-bare"}),
        (api_signer, {"api-signer-full", "api-signer-bare", "api-signer-partial"}),
        (db_admin, {"db-admin-full", "db-admin-partial", "db-admin-passthrough"}),
    ]
    for secret, expected in expectations:
        before = ecs_world.primaries(everyone)
        reached = Counter(ecs_world.updates_reached_moto)
        outcome = run(rotation_event(secret), runtime)
        after = ecs_world.primaries(everyone)
        assert names(outcome.redeployed) == expected, secret
        assert outcome.skipped == [] and outcome.failed == []
        assert changed(before, after) == {f"prod/{name}" for name in expected}, secret
        assert ecs_world.updates_reached_moto - reached == Counter(dict.fromkeys(expected, 1))

    # The same name in another account: none of ours is touched.
    before = ecs_world.primaries(everyone)
    outcome = run(rotation_event(other_account_db, account=OTHER_ACCOUNT), runtime)
    assert names(outcome.redeployed) == {"db-other-account"}
    assert changed(before, ecs_world.primaries(everyone)) == {"prod/db-other-account"}
    # Never touched by anything: other region, other partition.
    assert ecs_world.updates_reached_moto["db-other-region"] == 0
    assert ecs_world.updates_reached_moto["db-other-partition"] == 0
    assert update_calls_per_service(ecs_calls.of("UpdateService")) == Counter(
        dict.fromkeys(set(tds) - {"db-other-region", "db-other-partition"}, 1)
    )


# --- duplicates --------------------------------------------------------------------------


def test_three_deliveries_of_one_rotation_give_one_deployment_per_consumer(
    ecs_world, ecs_calls, runtime
):
    db = ecs_world.secret("prod/db")
    ecs_world.secret("prod/db-admin")
    ecs_world.cluster("prod")
    ecs_world.cluster("batch")
    consumers = {("prod", "api"), ("prod", "worker"), ("batch", "export"), ("prod", "gateway")}
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[f"{db}:password::"]))
    ecs_world.service("prod", "worker", ecs_world.task_definition(secrets=[partial(db)]))
    ecs_world.service("batch", "export", ecs_world.task_definition(secret_options=[db]))
    ecs_world.service(
        "prod", "gateway", ecs_world.task_definition(repository_credentials="prod/db")
    )
    ecs_world.service(
        "prod", "reporting", ecs_world.task_definition(secrets=[f"{db}:password:AWSPREVIOUS:"])
    )
    ecs_world.service(
        "prod", "billing", ecs_world.task_definition(secrets=[db]), tags={"rotor:redeploy": "false"}
    )
    ecs_world.service("prod", "admin", ecs_world.task_definition(secrets=[partial(db) + "-admin"]))
    everyone = [*consumers, ("prod", "reporting"), ("prod", "billing"), ("prod", "admin")]
    before = ecs_world.primaries(everyone)

    succeeded = rotation_event(db)
    deliveries = [label_event(db, "prod/db"), succeeded, dict(succeeded)]
    outcomes = [run(event, runtime) for event in deliveries]

    kinds = [o.classification.kind for o in outcomes]
    assert kinds == [EventKind.SECRET_VALUE_CHANGED, EventKind.ROTATION, EventKind.ROTATION]
    assert names(outcomes[0].redeployed) == {s for _, s in consumers}
    assert outcomes[1].redeployed == [] and outcomes[2].redeployed == []
    for later in outcomes[1:]:
        reasons = skipped_reasons(later)
        assert all(reasons[s].startswith("already fresh") for _, s in consumers)
    assert_redeployed_once(ecs_world, ecs_calls, before, {f"{c}/{s}" for c, s in consumers})


def test_world_sample_events_label_then_rotation_succeeded(world, clients, ecs_calls, runtime):
    """The shared world: both deliveries of the prod/db rotation redeploy api and worker once."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[ACCOUNT][REGION]
    # Keep the world's story whatever the real clock says: search was deployed after the
    # rotation, the others long before it.
    backdate_deployment(backend, "prod", "search", FRESH)
    ecs_world = EcsWorld(clients)
    services = [("prod", s) for s in ("api", "worker", "reporting", "billing", "search")]
    services += [("prod", "admin-console"), ("prod", "gateway"), ("batch", "nightly-export")]
    before = ecs_world.primaries(services)
    label = load_event("secret-label-updated-awscurrent.json")
    succeeded = load_event("rotation-succeeded.json")
    label["time"] = succeeded["time"] = succeeded["detail"]["eventTime"] = iso(ROTATED_AT)

    first, second, third = (run(e, runtime) for e in (label, succeeded, succeeded))

    assert names(first.redeployed) == {"api", "worker"}
    assert skipped_reasons(first) == {
        "billing": "opted out (tag rotor:redeploy=false)",
        "reporting": "pinned (stage AWSPREVIOUS): a rotation does not change what it reads",
        "search": skipped_reasons(first)["search"],
        "nightly-export": "desired count is 0: no task holds the old value",
    }
    assert skipped_reasons(first)["search"].startswith("already fresh")
    assert second.redeployed == [] and third.redeployed == []
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/api", "prod/worker"})


# --- throttling and transient errors -----------------------------------------------------


def _many_consumers(ecs_world: EcsWorld, count: int) -> tuple[str, list[tuple[str, str]]]:
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.cluster("batch")
    shared = ecs_world.task_definition(secrets=[f"{db}:password::"])
    partial_ref = ecs_world.task_definition(secrets=[partial(db)])
    consumers = []
    for i in range(count):
        cluster = "prod" if i % 3 else "batch"
        ecs_world.service(cluster, f"svc-{i:02d}", shared if i % 2 else partial_ref)
        consumers.append((cluster, f"svc-{i:02d}"))
    other = ecs_world.task_definition(secrets=["/prod/unrelated"])
    for i in range(5):
        ecs_world.service("prod", f"other-{i}", other)
    return db, consumers


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("RequestTimeout", 408), ("InternalError", 500)],
)
def test_every_consumer_redeployed_exactly_once_despite_errors_on_30_percent_of_ecs_calls(
    ecs_world, ecs_calls, clients, retry, sleeps, code, status
):
    db, consumers = _many_consumers(ecs_world, 24)
    injector = ErrorInjector(0.3, code=code, status=status).attach(clients.ecs)
    runtime = make_runtime(clients, retry)
    everyone = consumers + [("prod", f"other-{i}") for i in range(5)]
    before = ecs_world.primaries(everyone)

    outcome = run(rotation_event(db), runtime)

    assert outcome.failed == []
    assert sum(injector.injected.values()) > 0
    assert sleeps, "retries back off (recorded, not slept)"
    expected = {f"{c}/{s}" for c, s in consumers}
    # Injected errors answer before the call reaches moto: no attempt landed, so no retry can
    # find a deployment of its own; every consumer is redeployed by a call of its own.
    assert names(outcome.redeployed) == {s for _, s in consumers}
    assert len(outcome.redeployed) == len(consumers)
    assert outcome.skipped == []
    after = ecs_world.primaries(everyone)
    assert changed(before, after) == expected
    # Moto saw exactly one UpdateService per consumer; everything else was an injected error.
    assert ecs_world.updates_reached_moto == Counter({s: 1 for _, s in consumers})
    sent = ecs_calls.counts["UpdateService"]
    assert sent - injector.injected["UpdateService"] == len(consumers)


def test_update_that_landed_before_a_timeout_is_not_repeated(ecs_world, ecs_calls, runtime):
    """ECS accepted the call but the answer was lost: the retry finds its own deployment, stops."""
    db, consumers = _many_consumers(ecs_world, 4)
    victim = consumers[0][1]
    lost: list[str] = []

    def lose_first_answer(model: Any, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        service = parsed.get("service", {}).get("serviceName")
        if model.name == "UpdateService" and service == victim and not lost:
            lost.append(service)
            http_response.status_code = 500
            parsed.clear()
            parsed["Error"] = {"Code": "RequestTimeout", "Message": "answer lost"}
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 500}

    runtime.clients.ecs.meta.events.register("after-call.ecs.UpdateService", lose_first_answer)
    before = ecs_world.primaries(consumers)

    outcome = run(rotation_event(db), runtime)

    assert lost == [victim]
    assert outcome.failed == []
    assert ecs_world.updates_reached_moto == Counter({s: 1 for _, s in consumers})
    assert changed(before, ecs_world.primaries(consumers)) == {f"{c}/{s}" for c, s in consumers}
    # The victim's retry found the deployment its lost answer made: that deployment is
    # rotor's own (issue 14, bug 4), so it counts as redeployed, not as "already fresh", and
    # nothing is skipped.
    assert skipped_reasons(outcome) == {}
    assert names(outcome.redeployed) == {s for _, s in consumers}


# --- permanent failure -------------------------------------------------------------------


def test_one_service_failing_permanently_does_not_stop_the_others(
    ecs_world, ecs_calls, clients, runtime
):
    db, consumers = _many_consumers(ecs_world, 6)
    victim_cluster, victim = consumers[1]
    victim_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{victim_cluster}/{victim}"
    denied = FailFor("UpdateService", "AccessDeniedException", service=victim_arn).attach(
        clients.ecs
    )
    before = ecs_world.primaries(consumers)

    outcome = run(rotation_event(db), runtime)

    assert len(outcome.failed) == 1
    failure = outcome.failed[0]
    assert failure.subject == victim_arn
    assert failure.retryable is False
    assert "AccessDeniedException" in failure.error
    assert denied.hits == 1, "a permanent error is not retried"
    assert outcome.metrics["RedeployFailures"] == 1
    others = {f"{c}/{s}" for c, s in consumers if s != victim}
    assert names(outcome.redeployed) == {s for _, s in consumers if s != victim}
    after = ecs_world.primaries(consumers)
    assert changed(before, after) == others
    assert ecs_world.updates_reached_moto == Counter({s: 1 for _, s in consumers if s != victim})


# --- resolving the secret ----------------------------------------------------------------


@pytest.fixture
def sm_calls(clients: AwsClients) -> ApiCalls:
    return ApiCalls().attach(clients.secretsmanager)


@pytest.mark.parametrize("words", ["name", "partial-arn"])
@pytest.mark.parametrize("secret_name", ["prod/db", "prod/api-signer"])
def test_secret_named_by_name_or_partial_arn_is_resolved_with_one_describe_secret(
    ecs_world, ecs_calls, sm_calls, runtime, words, secret_name
):
    target = ecs_world.secret(secret_name)
    look_alikes = {
        name: ecs_world.secret(name)
        for name in ("prod/db-admin", "prod/api", "prod/db", "prod/api-signer")
        if name != secret_name
    }
    ecs_world.cluster("prod")
    ecs_world.service("prod", "consumer", ecs_world.task_definition(secrets=[f"{target}:k::"]))
    ecs_world.service(
        "prod", "by-name", ecs_world.task_definition(repository_credentials=secret_name)
    )
    for i, arn in enumerate(look_alikes.values()):
        ecs_world.service("prod", f"look-alike-{i}", ecs_world.task_definition(secrets=[arn]))
        ecs_world.service(
            "prod",
            f"look-alike-name-{i}",
            ecs_world.task_definition(repository_credentials=arn.split(":secret:")[1][:-7]),
        )
    everyone = [("prod", "consumer"), ("prod", "by-name")]
    everyone += [("prod", f"look-alike-{i}") for i in range(len(look_alikes))]
    everyone += [("prod", f"look-alike-name-{i}") for i in range(len(look_alikes))]
    before = ecs_world.primaries(everyone)
    event = put_value_event(secret_name if words == "name" else partial(target))
    sm_calls.calls.clear()
    sm_calls.counts.clear()

    outcome = run(event, runtime)

    assert outcome.classification.kind is EventKind.SECRET_VALUE_CHANGED
    assert sm_calls.counts["DescribeSecret"] == 1
    assert outcome.secret == target
    assert names(outcome.redeployed) == {"consumer", "by-name"}
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/consumer", "prod/by-name"})


def test_arn_written_by_aws_needs_no_describe_secret_to_resolve(
    ecs_world, ecs_calls, sm_calls, runtime
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[db]))
    before = ecs_world.primaries([("prod", "api")])
    sm_calls.counts.clear()

    # The label event carries the full ARN: nothing to resolve. One DescribeSecret, right before
    # redeploying, reads which version is AWSCURRENT (VersionIdsToStages): what the deployment
    # will hold, which the event's own version may no longer be (a late event).
    run(label_event(db, "prod/db"), runtime)
    assert sm_calls.of("DescribeSecret") == [{"SecretId": db}]
    # RotationSucceeded carries the full ARN but no version: the same one DescribeSecret, and
    # the version recognises the same rotation. With nothing to redeploy, no call at all.
    run(rotation_event(db), runtime)
    assert sm_calls.of("DescribeSecret") == [{"SecretId": db}]
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/api"})


def test_full_arn_in_the_callers_words_is_still_described(ecs_world, ecs_calls, sm_calls, runtime):
    # Only DescribeSecret can tell a full ARN from a partial ARN whose name ends in -XXXXXX.
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[db]))
    before = ecs_world.primaries([("prod", "api")])
    sm_calls.counts.clear()

    outcome = run(put_value_event(db), runtime)

    assert sm_calls.counts["DescribeSecret"] == 1
    assert outcome.secret == db
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/api"})


def test_cross_account_secret_referenced_by_full_arn_is_redeployed(
    ecs_world, ecs_calls, sm_calls, runtime
):
    shared = secret_arn_in(OTHER_ACCOUNT, "shared/db", "Sh4r3d")
    ours = ecs_world.secret("shared/db")  # the same name in our own account
    ecs_world.cluster("prod")
    ecs_world.service(
        "prod", "consumer", ecs_world.task_definition(secrets=[f"{shared}:password::"])
    )
    ecs_world.service("prod", "ours", ecs_world.task_definition(secrets=[f"{ours}:password::"]))
    ecs_world.service(
        "prod", "ours-by-name", ecs_world.task_definition(repository_credentials="shared/db")
    )
    everyone = [("prod", "consumer"), ("prod", "ours"), ("prod", "ours-by-name")]
    before = ecs_world.primaries(everyone)
    sm_calls.counts.clear()

    # Forwarded from the owner account: the event is the owner's.
    outcome = run(rotation_event(shared, account=OTHER_ACCOUNT), runtime)

    assert outcome.secret == shared
    assert names(outcome.redeployed) == {"consumer"}
    # Only the version lookup, which the owner account's secret may refuse; it goes on without.
    assert sm_calls.of("DescribeSecret") == [{"SecretId": shared}]
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/consumer"})


def test_label_event_of_an_undescribable_secret_reaches_consumers_by_name_and_partial_arn(
    ecs_world, ecs_calls, sm_calls, clients, runtime
):
    """DescribeSecret refused: rotor goes by the event alone. The label event's ARN is AWS's,
    so its -XXXXXX suffix is the suffix and the name is prod/db (not prod/db-Ab12Cd): consumers
    naming the secret by name or by partial ARN are its consumers too."""
    db = ecs_world.secret("prod/db")
    denied = FailFor("DescribeSecret", "AccessDeniedException").attach(clients.secretsmanager)
    ecs_world.cluster("prod")
    ecs_world.service("prod", "by-arn", ecs_world.task_definition(secrets=[db]))
    by_name = ecs_world.task_definition(repository_credentials="prod/db")  # names: only here
    ecs_world.service("prod", "by-name", by_name)
    ecs_world.service("prod", "by-partial", ecs_world.task_definition(secrets=[partial(db)]))
    look_alike = ecs_world.task_definition(repository_credentials="prod/db-other")
    ecs_world.service("prod", "look-alike", look_alike)
    everyone = [("prod", s) for s in ("by-arn", "by-name", "by-partial", "look-alike")]
    before = ecs_world.primaries(everyone)

    outcome = run(label_event(db, "prod/db"), runtime)

    assert denied.hits >= 1  # rotor did try, and went on without
    assert outcome.failed == []
    assert outcome.secret == db
    assert_redeployed_once(
        ecs_world, ecs_calls, before, {"prod/by-arn", "prod/by-name", "prod/by-partial"}
    )


def test_unreadable_references_are_counted_and_noted_without_stopping_the_rotation(
    ecs_world, ecs_calls, runtime
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[db]))
    ecs_world.service("prod", "odd", ecs_world.task_definition(secrets=["arn:aws:s3:::nope"]))
    before = ecs_world.primaries([("prod", "api"), ("prod", "odd")])

    outcome = run(rotation_event(db), runtime)

    assert outcome.metrics["UnreadableReferences"] == 1
    assert len(outcome.notes) == 1 and "arn:aws:s3:::nope" in outcome.notes[0]
    assert_redeployed_once(ecs_world, ecs_calls, before, {"prod/api"})
