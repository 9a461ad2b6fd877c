"""RetryPolicy.call and the botocore → rotor error adapter. Sleeps are recorded, never slept."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)

from orchestration.aws.retry import THROTTLING_CODES, TRANSIENT_CODES, RetryPolicy, to_rotor_error
from orchestration.errors import AwsCallError, PermanentAwsError, RetryableAwsError
from tests.conftest import Sleeps

ENDPOINT = "https://ecs.us-east-1.amazonaws.com"


def client_error(code: str, status: int = 400, operation: str = "UpdateService") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} happened"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


class Flaky:
    """Raises the given errors one per call, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: Any = "ok") -> None:
        self.errors = list(errors)
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if len(self.calls) <= len(self.errors):
            raise self.errors[len(self.calls) - 1]
        return self.result


def always(error: Callable[[], BaseException]) -> Flaky:
    return Flaky(*(error() for _ in range(100)))


def policy(sleeps: Sleeps, **overrides: Any) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, **overrides)


# --- retried, then success -----------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES | TRANSIENT_CODES))
def test_retryable_codes_are_retried_until_success(sleeps: Sleeps, code: str) -> None:
    fn = Flaky(client_error(code), client_error(code), client_error(code), result={"ok": 1})
    retry = policy(sleeps, max_attempts=5, max_wait_seconds=2.0)
    assert retry.call("UpdateService", fn, cluster="prod", service="api") == {"ok": 1}
    assert len(fn.calls) == 4
    assert fn.calls == [{"cluster": "prod", "service": "api"}] * 4
    assert len(sleeps) == 3
    assert all(0 <= s <= 2.0 for s in sleeps)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lambda: ConnectionError(error="reset"), id="ConnectionError"),
        pytest.param(
            lambda: EndpointConnectionError(endpoint_url=ENDPOINT), id="EndpointConnection"
        ),
        pytest.param(lambda: ReadTimeoutError(endpoint_url=ENDPOINT), id="ReadTimeout"),
        pytest.param(lambda: ConnectTimeoutError(endpoint_url=ENDPOINT), id="ConnectTimeout"),
        pytest.param(lambda: HTTPClientError(error="broken pipe"), id="HTTPClientError"),
        pytest.param(lambda: ConnectionClosedError(endpoint_url=ENDPOINT), id="ConnectionClosed"),
        pytest.param(lambda: client_error("Whatever", status=503), id="status-503"),
        pytest.param(lambda: client_error("Whatever", status=429), id="status-429"),
        pytest.param(lambda: client_error("Whatever", status=500), id="status-500"),
    ],
)
def test_connection_errors_and_5xx_are_retried(
    sleeps: Sleeps, error: Callable[[], BaseException]
) -> None:
    fn = Flaky(error(), error(), result="done")
    assert policy(sleeps).call("DescribeServices", fn) == "done"
    assert len(fn.calls) == 3
    assert len(sleeps) == 2


# --- permanent: one attempt ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(
            lambda: client_error("AccessDeniedException"),
            "AccessDeniedException",
            id="AccessDenied",
        ),
        pytest.param(
            lambda: client_error("ResourceNotFoundException"),
            "ResourceNotFoundException",
            id="NotFound",
        ),
        pytest.param(
            lambda: client_error("InvalidParameterException"),
            "InvalidParameterException",
            id="InvalidParameter",
        ),
        pytest.param(
            lambda: client_error("ServiceNotActiveException"),
            "ServiceNotActiveException",
            id="ServiceNotActive",
        ),
        pytest.param(lambda: NoCredentialsError(), "NoCredentialsError", id="NoCredentials"),
    ],
)
def test_permanent_errors_fail_at_once(
    sleeps: Sleeps, error: Callable[[], BaseException], code: str
) -> None:
    fn = always(error)
    with pytest.raises(PermanentAwsError) as caught:
        policy(sleeps).call("UpdateService", fn)
    assert len(fn.calls) == 1
    assert sleeps == []
    assert caught.value.operation == "UpdateService"
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, ClientError | NoCredentialsError)


def test_non_aws_exceptions_propagate_unchanged(sleeps: Sleeps) -> None:
    fn = always(lambda: ValueError("bug in the caller"))
    with pytest.raises(ValueError, match="bug in the caller"):
        policy(sleeps).call("UpdateService", fn)
    assert len(fn.calls) == 1
    assert sleeps == []


# --- giving up -----------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_gives_up_after_max_attempts(sleeps: Sleeps, max_attempts: int) -> None:
    fn = always(lambda: client_error("ThrottlingException"))
    with pytest.raises(RetryableAwsError) as caught:
        policy(sleeps, max_attempts=max_attempts).call("UpdateService", fn)
    assert len(fn.calls) == max_attempts
    assert len(sleeps) == max_attempts - 1
    assert caught.value.code == "ThrottlingException"
    assert caught.value.operation == "UpdateService"
    assert "ThrottlingException happened" in str(caught.value)
    assert isinstance(caught.value.__cause__, ClientError)


def test_no_time_left_means_one_attempt(sleeps: Sleeps) -> None:
    fn = always(lambda: client_error("Throttling"))
    with pytest.raises(RetryableAwsError):
        policy(sleeps, remaining=lambda: 0.0).call("UpdateService", fn)
    assert len(fn.calls) == 1
    assert sleeps == []


def test_stops_when_the_deadline_runs_out(sleeps: Sleeps) -> None:
    left: Iterator[float] = iter([60.0, 60.0, 0.0, 0.0, 0.0])
    fn = always(lambda: client_error("Throttling"))
    with pytest.raises(RetryableAwsError):
        policy(sleeps, max_attempts=10, remaining=lambda: next(left)).call("UpdateService", fn)
    assert len(fn.calls) == 3
    assert len(sleeps) == 2


def test_never_sleeps_past_the_deadline(sleeps: Sleeps) -> None:
    fn = always(lambda: client_error("Throttling"))
    with pytest.raises(RetryableAwsError):
        policy(
            sleeps, max_attempts=50, base_seconds=1.0, max_wait_seconds=10.0, remaining=lambda: 0.5
        ).call("UpdateService", fn)
    assert all(s < 0.5 for s in sleeps)


def test_with_deadline_keeps_everything_else(sleeps: Sleeps) -> None:
    original = policy(sleeps, max_attempts=4, base_seconds=0.2, max_wait_seconds=1.0)
    bounded = original.with_deadline(lambda: 0.0)
    assert (bounded.max_attempts, bounded.base_seconds, bounded.max_wait_seconds) == (4, 0.2, 1.0)
    assert bounded.sleep is sleeps
    fn = always(lambda: client_error("Throttling"))
    with pytest.raises(RetryableAwsError):
        bounded.call("UpdateService", fn)
    assert len(fn.calls) == 1
    # the original policy is unchanged: it retries up to its four attempts
    fn = always(lambda: client_error("Throttling"))
    with pytest.raises(RetryableAwsError):
        original.call("UpdateService", fn)
    assert len(fn.calls) == 4


# --- backoff -------------------------------------------------------------------------------


def test_sleeps_stay_within_exponential_window_and_cap(sleeps: Sleeps) -> None:
    fn = always(lambda: client_error("Throttling"))
    retry = policy(sleeps, max_attempts=12, base_seconds=0.1, max_wait_seconds=1.5)
    with pytest.raises(RetryableAwsError):
        retry.call("UpdateService", fn)
    assert len(sleeps) == 11
    for attempt, seconds in enumerate(sleeps, start=1):
        window = min(1.5, 0.1 * 2 ** (attempt - 1))
        assert 0 <= seconds <= window + 1e-9, (attempt, seconds)


def test_backoff_has_full_jitter() -> None:
    first_sleeps: list[float] = []
    all_sleeps: list[float] = []
    for _ in range(40):
        sleeps = Sleeps()
        fn = Flaky(
            client_error("Throttling"), client_error("Throttling"), client_error("Throttling")
        )
        policy(sleeps, base_seconds=1.0, max_wait_seconds=4.0).call("UpdateService", fn)
        first_sleeps.append(sleeps[0])
        all_sleeps.extend(sleeps)
    assert len(set(first_sleeps)) > 30  # random, not a fixed schedule
    # full jitter spreads over [0, window]: some sleeps land in the lower half of window 1
    assert min(first_sleeps) < 0.5
    assert max(all_sleeps) <= 4.0
    assert not all(math.isclose(s, first_sleeps[0]) for s in first_sleeps)


# --- one budget per piece of work -----------------------------------------------------------


def test_calls_under_one_budget_share_its_retries(sleeps: Sleeps) -> None:
    retry = policy(sleeps, max_attempts=4)  # three retries for the whole piece of work
    first = Flaky(client_error("Throttling"), client_error("Throttling"), result=1)
    second = always(lambda: client_error("Throttling"))

    with retry.budget():
        assert retry.call("PutItem", first) == 1
        with pytest.raises(RetryableAwsError):
            retry.call("UpdateService", second)

    assert len(first.calls) == 3  # two retries spent
    assert len(second.calls) == 2  # its first attempt, then the one retry left
    assert len(sleeps) == 3


def test_a_call_inside_another_calls_attempt_does_not_retry_on_its_own(sleeps: Sleeps) -> None:
    """Nested retries would multiply (10 x 10 attempts): the outer call retries the whole."""
    retry = policy(sleeps, max_attempts=5)
    inner = always(lambda: client_error("ProvisionedThroughputExceededException"))

    def outer() -> Any:
        return retry.call("PutItem", inner)

    with pytest.raises(RetryableAwsError):
        retry.call("ClaimRedeploy", outer)

    assert len(inner.calls) == 5
    assert len(sleeps) == 4


def test_calls_under_a_budget_stop_at_its_deadline_whatever_their_own_policy(
    sleeps: Sleeps,
) -> None:
    """The ledger's store keeps its own policy; under a redeploy's budget, the redeploy's
    deadline is the one that counts."""
    bounded = policy(sleeps, max_attempts=10, remaining=lambda: 0.0)
    unbounded = policy(sleeps, max_attempts=10)
    fn = always(lambda: client_error("Throttling"))

    with bounded.budget(), pytest.raises(RetryableAwsError):
        unbounded.call("PutItem", fn)

    assert len(fn.calls) == 1
    assert sleeps == []


def test_separate_calls_each_have_their_own_budget(sleeps: Sleeps) -> None:
    retry = policy(sleeps, max_attempts=3)
    for _ in range(2):
        fn = Flaky(client_error("Throttling"), client_error("Throttling"), result=1)
        assert retry.call("DescribeServices", fn) == 1
        assert len(fn.calls) == 3


# --- to_rotor_error ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        pytest.param(client_error("SlowDown"), RetryableAwsError, "SlowDown", id="throttling"),
        pytest.param(
            client_error("InternalServiceError"),
            RetryableAwsError,
            "InternalServiceError",
            id="transient",
        ),
        pytest.param(client_error("AccessDenied"), PermanentAwsError, "AccessDenied", id="denied"),
        pytest.param(client_error("X", status=502), RetryableAwsError, "X", id="502"),
        pytest.param(client_error("X", status=404), PermanentAwsError, "X", id="404"),
        pytest.param(
            ConnectionError(error="x"), RetryableAwsError, "ConnectionError", id="connection"
        ),
        pytest.param(
            HTTPClientError(error="x"), RetryableAwsError, "HTTPClientError", id="http-client"
        ),
        pytest.param(
            NoCredentialsError(), PermanentAwsError, "NoCredentialsError", id="no-credentials"
        ),
    ],
)
def test_to_rotor_error(exc: BaseException, kind: type[AwsCallError], code: str) -> None:
    error = to_rotor_error("GetSecretValue", exc)
    assert type(error) is kind
    assert (error.operation, error.code) == ("GetSecretValue", code)


def test_to_rotor_error_passes_rotor_errors_through_and_refuses_others() -> None:
    mine = PermanentAwsError("UpdateService", "X", "y")
    assert to_rotor_error("Other", mine) is mine
    with pytest.raises(TypeError):
        to_rotor_error("UpdateService", ValueError("not AWS"))
