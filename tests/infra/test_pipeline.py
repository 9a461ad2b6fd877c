"""The pipeline (.gitlab-ci.yml, .ci/run): the test stage builds the artifact once, as the README
builds it; the deploy stage deploys that artifact, as the pipeline role, through the
CloudFormation execution role, and never builds.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from tests.infra.conftest import INFRA, ROOT, read_template

BUILT_TEMPLATE = ".aws-sam/build/template.yaml"
BUILD_COMMANDS = re.compile(
    r"\bsam\s+build\b|\bsam\s+sync\b|\bmake\b|build_artifact|\.ci/run|pip\s+wheel|--use-container"
)


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    return loaded


def _lines(job: dict[str, Any]) -> list[str]:
    return [*job.get("before_script", []), *job.get("script", [])]


def _sam_deploy(job: dict[str, Any]) -> list[str]:
    (command,) = [line for line in _lines(job) if line.strip().startswith("sam deploy")]
    return shlex.split(command)


def test_the_test_stage_builds_with_sam_and_keeps_the_build(pipeline: dict[str, Any]) -> None:
    test = pipeline["test"]
    assert test["stage"] == "test"
    assert "bash .ci/run" in test["script"]
    assert "infra/.aws-sam/build/" in test["artifacts"]["paths"]
    run = (ROOT / ".ci" / "run").read_text()
    # .ci/run builds as the README says (from infra/, with the pinned SAM CLI) and lints with
    # SAM and the serverless rules.
    assert re.search(r'cd infra && rm -rf \.aws-sam && "\$sam/sam" build\)', run)
    assert '(cd infra && "$sam/sam" validate --lint)' in run
    assert "--append-rules cfn_lint_serverless.rules" in run
    assert re.search(r"aws-sam-cli==\d+\.\d+\.\d+", run)
    assert re.search(r"cfn-lint-serverless==\d+\.\d+\.\d+", run)


def test_the_deploy_job_deploys_the_tested_artifact_without_rebuilding(
    pipeline: dict[str, Any],
) -> None:
    deploy = pipeline["deploy"]
    assert deploy["stage"] == "deploy"
    assert deploy["needs"] == [{"job": "test", "artifacts": True}]
    for line in _lines(deploy):
        assert not BUILD_COMMANDS.search(line), line
    assert "cd infra" in deploy["script"]
    command = _sam_deploy(deploy)
    assert command[command.index("--template-file") + 1] == BUILT_TEMPLATE
    assert "--no-resolve-s3" in command
    assert command[command.index("--s3-bucket") + 1] == "$ROTOR_ARTIFACTS_BUCKET"


def test_the_deploy_job_assumes_the_pipeline_role_and_deploys_as_the_execution_role(
    pipeline: dict[str, Any],
) -> None:
    deploy = pipeline["deploy"]
    assert deploy["id_tokens"]["AWS_ID_TOKEN"]["aud"]
    script = "\n".join(_lines(deploy))
    assert 'export AWS_ROLE_ARN="$ROTOR_PIPELINE_ROLE_ARN"' in script
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in script
    # No stored keys anywhere.
    assert "AWS_SECRET_ACCESS_KEY" not in (ROOT / ".gitlab-ci.yml").read_text()
    command = _sam_deploy(deploy)
    assert command[command.index("--role-arn") + 1] == "$ROTOR_CLOUDFORMATION_ROLE_ARN"
    assert deploy["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == "main" && $CI_PIPELINE_SOURCE != "merge_request_event"'}
    ]


def test_the_deploy_passes_the_bootstrap_stacks_boundary_and_key(
    pipeline: dict[str, Any],
) -> None:
    command = _sam_deploy(pipeline["deploy"])
    overrides = command[command.index("--parameter-overrides") + 1 :]
    assert overrides[:2] == [
        "PermissionsBoundaryArn=$ROTOR_PERMISSIONS_BOUNDARY_ARN",
        "TopicKmsKeyArn=$ROTOR_TOPIC_KMS_KEY_ARN",
    ]
    assert overrides[2:] == ["${ROTOR_PARAMETER_OVERRIDES}"]
    parameters = read_template(INFRA / "template.yaml")["Parameters"]
    for override in overrides[:2]:
        assert override.split("=")[0] in parameters, override
