"""``rotor status``: recent rotations and each consumer's progress, from the rollout store."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from orchestration.aws.clients import region_of_arn
from orchestration.errors import UsageError
from orchestration.state.rollouts import RolloutStore, Status, StoredRotation
from orchestration.times import iso

_SINCE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> timedelta:
    """``24h``, ``90m``, ``7d`` or seconds."""
    match = _SINCE.match(text)
    if not match:
        raise UsageError(f"--since: expected seconds or a number with s/m/h/d, got {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def status_report(
    store: RolloutStore, now: datetime, since: timedelta, secret: str | None = None
) -> dict[str, Any]:
    rotations = store.rotations(now - since, secret)
    return {
        "since": iso(now - since),
        "secret": secret,
        "rotations": [_rotation(r) for r in rotations],
    }


def _rotation(record: StoredRotation) -> dict[str, Any]:
    counts = Counter(s.status.value for s in record.services.values())
    return {
        "rotation": record.rotation_id,
        "secret": record.secret_arn,
        # A replica's rotation is its own (its ARN, in its region): the region says which.
        "region": region_of_arn(record.secret_arn),
        "version": record.version,
        "rotated_at": iso(record.rotated_at),
        "counts": {status.value: counts.get(status.value, 0) for status in Status},
        "services": [
            {
                "service": arn,
                "region": region_of_arn(arn),
                "status": s.status.value,
                "detail": s.detail,
                "at": iso(s.at),
                "deployment": s.deployment_id,
            }
            for arn, s in sorted(record.services.items(), key=lambda i: (region_of_arn(i[0]), i[0]))
        ],
    }


def render_status(report: dict[str, Any]) -> list[str]:
    """The report as lines of text: one block per rotation, one row per service."""
    rotations = report["rotations"]
    scope = f" of {report['secret']}" if report["secret"] else ""
    if not rotations:
        return [f"no rotation{scope} recorded since {report['since']}"]
    lines = [f"{len(rotations)} rotation(s){scope} since {report['since']}"]
    for rotation in rotations:
        counts = ", ".join(f"{n} {status}" for status, n in rotation["counts"].items() if n)
        lines += [
            "",
            f"{rotation['secret']}",
            f"  version {rotation['version'] or '?'} current at {rotation['rotated_at']}"
            f": {counts or 'no consumers'}",
        ]
        rows = [
            [
                s["region"] or "-",
                s["service"].split(":service/", 1)[-1],
                s["status"],
                s["at"],
                s["detail"],
            ]
            for s in rotation["services"]
        ]
        header = ["REGION", "SERVICE", "STATUS", "SINCE", "DETAIL"]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for row in [header, *rows]:
            cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
            lines.append("  " + "  ".join([*cells, row[4]]))
    return lines
