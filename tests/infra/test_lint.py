"""cfn-lint, cdk-nag and checkov over every synthesized template: no errors, every exception justified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import Synthesis

# The one place cfn-lint warnings are accepted, each with why.
ACCEPTED_CFN_LINT_WARNINGS = {
    "W3005": "CDK adds DependsOn from a Lambda function or state machine to its role (and the role's "
    "default policy) so the policy exists before the first invocation; the role half is redundant "
    "with the GetAtt, which cfn-lint points out. Harmless.",
}


@pytest.fixture(scope="module", params=["test_synth", "repo_synth"])
def synth(request: pytest.FixtureRequest) -> Synthesis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_cfn_lint_finds_no_errors_and_only_accepted_warnings(synth: Synthesis) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", str(synth.template_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    unexpected = [
        f"{f['Rule']['Id']} {f['Location']['Path']}: {f['Message']}"
        for f in findings
        if f["Rule"]["Id"] not in ACCEPTED_CFN_LINT_WARNINGS
    ]
    assert not unexpected, "\n".join(unexpected)
    assert not [f for f in findings if f["Level"] == "Error"]


def _report(synth: Synthesis) -> dict:
    return json.loads((synth.outdir / "validation-report.json").read_text())  # type: ignore[no-any-return]


def test_cdk_nag_has_no_unacknowledged_findings(synth: Synthesis) -> None:
    (pack,) = _report(synth)["pluginReports"]
    assert pack["pluginName"] == "AwsSolutions"
    assert pack["conclusion"] == "success", json.dumps(pack["violations"], indent=1)[:3000]
    assert pack["violations"] == []


def test_every_cdk_nag_acknowledgment_says_why(synth: Synthesis) -> None:
    metadata = json.loads((synth.outdir / f"{synth.stack.stack_name}.metadata.json").read_text())
    acknowledged = {
        rule: reason
        for entries in metadata.values()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
        if rule.startswith("AwsSolutions::")
    }
    assert acknowledged
    assert all(len(reason) > 30 for reason in acknowledged.values()), acknowledged
    suppressed = {
        v["ruleName"].split("[")[0] for v in _report(synth)["pluginReports"][0]["suppressedViolations"]
    }
    # The rules waived, all explained in docs/infra.md; anything new needs a reason there too.
    assert suppressed <= {
        "AwsSolutions-S1",
        "AwsSolutions-IAM4",
        "AwsSolutions-IAM5",
        "AwsSolutions-L1",
        "AwsSolutions-ECS2",
        "AwsSolutions-ECS4",
        "AwsSolutions-SQS3",
    }


CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"


def _checkov() -> str:
    """checkov pins its own boto3, older than the project's, so `make test` installs it in a venv of its own."""
    found = os.environ.get("NIGHTSHIFT_CHECKOV") or (str(CHECKOV) if CHECKOV.exists() else None)
    if not found:
        # Never a skip: a scanner that silently does not run is a check that cannot fail.
        pytest.fail(f"{CHECKOV} is missing: `make checkov` installs it (make test does)", pytrace=False)
    return found


def test_checkov_has_no_unacknowledged_findings(synth: Synthesis) -> None:
    result = subprocess.run(
        [
            _checkov(),
            "-f",
            str(synth.template_path),
            "--framework",
            "cloudformation",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 200 and report["summary"]["parsing_errors"] == 0


def test_every_checkov_acknowledgment_says_why(synth: Synthesis) -> None:
    skips = [
        skip
        for resource in synth.template["Resources"].values()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    assert all(skip["id"].startswith("CKV_") and len(skip["comment"]) > 30 for skip in skips), skips
