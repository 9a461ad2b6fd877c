"""The stored form of a task definition summary reads back as the same summary."""

from __future__ import annotations

import json

from orchestration.ecs.discovery import summarize_task_definition
from orchestration.state.task_definitions import summary_from_json, summary_to_json

ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/app:7"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"


def test_a_summary_survives_the_round_trip() -> None:
    summary = summarize_task_definition(
        {
            "taskDefinitionArn": ARN,
            "taskRoleArn": "arn:aws:iam::123456789012:role/app",
            "containerDefinitions": [
                {
                    "name": "app",
                    "secrets": [
                        {"name": "A", "valueFrom": f"{SECRET}:password::"},
                        {"name": "B", "valueFrom": f"{SECRET}:password:AWSPREVIOUS:"},
                        {"name": "C", "valueFrom": "arn:aws:secretsmanager:nonsense"},
                    ],
                    "repositoryCredentials": {"credentialsParameter": "prod/registry"},
                }
            ],
        }
    )
    assert summary.unreadable, "the sample has an unreadable reference"
    assert len(summary.references) == 3

    assert summary_from_json(summary_to_json(summary)) == summary


def test_an_item_of_another_format_is_ignored() -> None:
    assert summary_from_json(json.dumps({"format": 0, "arn": ARN})) is None
    assert summary_from_json("not json") is None
    assert summary_from_json(json.dumps({"format": 1})) is None
