"""A rotation's consumers from the consumer index, when there is one rotor may trust.

With a usable index (``ROTOR_STATE_TABLE`` set, the secret's region rebuilt by a full scan
within ``ROTOR_INDEX_MAX_AGE``), a rotation describes only the index's candidates
(``orchestration.ecs.indexed``): its ECS reads are ceil(candidates / 10) per cluster, whatever
the number of services in the account. Without one it scans, as before: silently when no index
exists (no table, or never built), saying so (outcome note, warning log) when the index is too
old or cannot be read (the index is read and kept with one attempt per call: a table that
cannot answer right away makes the rotation scan, never wait).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from orchestration.ecs.discovery import Inventory
from orchestration.ecs.indexed import describe_candidates
from orchestration.errors import AwsCallError
from orchestration.outcome import EventOutcome
from orchestration.ports import Adapters
from orchestration.secrets.references import SecretIdentity

log = logging.getLogger(__name__)


def indexed_inventory(
    secret: SecretIdentity,
    runtime: Adapters,
    outcome: EventOutcome,
    clusters: Sequence[str] | None = None,
) -> Inventory | None:
    """The index's candidates for ``secret`` (in ``clusters``, when given), described; ``None``
    when there is no index rotor may trust (the caller scans)."""
    if runtime.consumer_index is None:
        return None
    # One attempt each: the index is an optimisation, and a table that cannot answer right
    # away must not cost the rotation a retry budget before the scan it falls back to.
    index = runtime.consumer_index.with_retry(dataclasses.replace(runtime.retry, max_attempts=1))
    try:
        candidates = index.candidates(secret)
        built = candidates.built_at if candidates is not None else index.built_at(secret.region)
    except AwsCallError as exc:
        _scan_instead(outcome, f"the consumer index could not be read ({exc})")
        return None
    if candidates is None:
        if built is None:
            log.info("no consumer index of %s yet: full scan", secret.region)
        else:
            age = datetime.now(UTC) - built
            _scan_instead(
                outcome,
                f"the consumer index of {secret.region} was built {_minutes(age)} ago, longer "
                f"than ROTOR_INDEX_MAX_AGE ({_minutes(index.max_age)}): not trusted",
            )
        return None
    # A plan's part, else the clusters a scan reads (ROTOR_CLUSTERS; empty: every one).
    scope = clusters if clusters is not None else (runtime.settings.clusters or None)
    read = describe_candidates(candidates, runtime.discovery(), index, scope)
    outcome.notes.append(
        f"consumer index: {read.described} candidate(s) described in {read.calls} "
        f"DescribeServices call(s) instead of a full scan"
    )
    outcome.notes.extend(
        f"service {arn} runs other task definitions than indexed: re-indexed"
        for arn in read.rescanned
    )
    outcome.notes.extend(f"indexed service {arn} is gone: forgotten" for arn in read.forgotten)
    log.info(
        "secret %s: %d indexed candidates, %d DescribeServices, %d re-indexed, %d forgotten",
        secret.arn,
        read.described,
        read.calls,
        len(read.rescanned),
        len(read.forgotten),
    )
    return read.inventory


def _scan_instead(outcome: EventOutcome, why: str) -> None:
    note = f"{why}: full scan instead"
    outcome.notes.append(note)
    log.warning(note)


def _minutes(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
