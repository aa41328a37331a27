"""The Nightshift app synthesized once per session over test and real pipelines, and run in moto."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.loaders
import botocore.session
import pytest

from tests.support.shared import made_once, shared_root

if TYPE_CHECKING:
    from tests.infra.moto_harness import Harness


#: One botocore data loader per search path for the process. moto's mock gives every test a new
#: default session, and each session's loader read every service's JSON model again (EC2's is
#: megabytes): a quarter of an infra test's CPU. A loader's models are shared by the clients of its
#: session anyway; they are shared here by every session's.
_LOADERS: dict[Any, botocore.loaders.Loader] = {}
_LOADERS_LOCK = threading.Lock()
_create_loader = botocore.loaders.create_loader


def _shared_loader(search_path_string: Any = None) -> botocore.loaders.Loader:
    with _LOADERS_LOCK:
        if search_path_string not in _LOADERS:
            _LOADERS[search_path_string] = _create_loader(search_path_string)
        return _LOADERS[search_path_string]


botocore.session.create_loader = _shared_loader  # type: ignore[assignment]


ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:nightshift/ssh-key-AbCdEf"
SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"]

# The shape of sql/example: two steps in stage 10, one in 20, two in 30; scheduled in Berlin time.
NIGHTLY_STEPS = {
    "10_users.sql": "SELECT 1;",
    "10_events.sql": "SELECT 2;",
    "20_sessions.hql": "SELECT 3;",
    "30_funnel.sql": "SELECT 4;",
    "30_segments.sql": "SELECT 5;",
}
NIGHTLY_TOML = """
[schedule]
cron = "0 3 * * *"
timezone = "Europe/Berlin"

[cluster]
master_instance_type = "m6g.xlarge"
core_instance_count = 2
use_spot = true
core_instance_types = ["r7g.2xlarge", "r6g.2xlarge", "m6g.2xlarge"]

[cluster.configurations.spark-defaults]
"spark.sql.shuffle.partitions" = "64"

[catalog]
databases = ["nightly", "nightly_staging"]
warehouse = "s3://lake/curated/warehouse/"

[steps]
timeout_minutes = 45
retries = 2
retry_interval_seconds = 30
"""
# A master-only cluster with its own metastore, whose launches fall back to other instance types;
# two dates may run at once, and a third waits three seconds for a slot.
ADHOC_TOML = """
max_concurrent_runs = 2
queue_minutes = 0.05

[schedule]
cron = "30 6 * * 1-5"
timezone = "America/New_York"
enabled = false

[cluster]
core_instance_count = 0
# Tables that end with the cluster: no Glue catalog at all.
metastore = "cluster"
# A .sh pipeline: no Hive nor Spark on its nights (its canary's cluster gets them).
applications = ["Hadoop"]
"""


def write_pipelines(folder: Path) -> Path:
    nightly = folder / "nightly"
    nightly.mkdir(parents=True)
    (nightly / "pipeline.toml").write_text(NIGHTLY_TOML)
    for name, text in NIGHTLY_STEPS.items():
        (nightly / name).write_text(text)
    adhoc = folder / "adhoc"
    adhoc.mkdir()
    (adhoc / "pipeline.toml").write_text(ADHOC_TOML)
    (adhoc / "10_export.sh").write_text("echo export\n")
    return folder


def base_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass(frozen=True)
class SynthesizedStack:
    """What the tests read of a synthesized stack: its name (the template and metadata files bear it)."""

    stack_name: str


@dataclass
class Synthesis:
    """One synthesized app: the assembly folder, the template and the stack's handy parts."""

    outdir: Path
    template: dict[str, Any]
    stack: SynthesizedStack
    pipelines_dir: Path

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.stack.stack_name}.template.json"


#: What a synth depends on besides its context and pipelines: a change to any of them is a new synth.
SYNTH_SOURCES = ("infra", "lambdas", "runner", "app.py", "cdk.json")


def synth_key(context: dict[str, Any], pipelines_dir: Path) -> str:
    """A digest of everything a synth reads: the context, the pipelines' files and the app's sources."""
    digest = hashlib.sha256(json.dumps(context, sort_keys=True).encode())
    for base in [*(ROOT / name for name in SYNTH_SOURCES), pipelines_dir]:
        files = sorted(base.rglob("*")) if base.is_dir() else [base]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(f"{file.relative_to(base)}\0".encode() + file.read_bytes())
    return digest.hexdigest()[:20]


def synthesize(outdir: Path, context: dict[str, Any], pipelines_dir: Path) -> Synthesis:
    """Synthesize the app once per session for each distinct context, pipelines and sources.

    The workers of a parallel session share the assembly: the first to ask synthesizes it under a file
    lock, the others wait for it and read the same files (the tests only read an assembly).
    """
    cache = made_once(
        shared_root(outdir) / f"synth-{synth_key(context, pipelines_dir)}",
        lambda folder: (folder / "stack-name").write_text(_synthesize(folder, context, pipelines_dir)),
    )
    name = (cache / "stack-name").read_text()
    template = json.loads((cache / f"{name}.template.json").read_text())
    return Synthesis(cache, template, SynthesizedStack(name), pipelines_dir)


def _synthesize(outdir: Path, context: dict[str, Any], pipelines_dir: Path) -> str:
    # The CDK starts its Node.js runtime on import: only the tiers that synthesize pay for it.
    import aws_cdk as cdk  # noqa: PLC0415

    import app as nightshift_app  # noqa: PLC0415

    app = cdk.App(outdir=str(outdir), context=context)
    stack = nightshift_app.build(app, pipelines_dir=pipelines_dir)
    app.synth()
    return str(stack.stack_name)


@pytest.fixture(scope="session")
def test_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The test pipelines in an existing VPC (ids from context, no look-up)."""
    pipelines = write_pipelines(tmp_path_factory.mktemp("pipelines"))
    context = {
        **base_context(),
        "ssh_key_secret_arn": SECRET_ARN,
        "queue_poll_seconds": 1,  # a queued run asks again every second, not every minute
        "vpc": {
            "vpc_id": "vpc-0123456789abcdef0",
            "availability_zones": [f"{REGION}a", f"{REGION}b"],
            "private_subnet_ids": SUBNETS,
        },
        "data_access": {
            "nightly": {"read": ["s3://lake/raw/"], "write": ["s3://lake/curated/"]},
            "*": {"read": ["s3://lake/raw/adhoc/"]},
        },
    }
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context, pipelines)


@pytest.fixture(scope="session")
def repo_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The real sql/ folder with cdk.json as committed (a new VPC)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"), base_context(), ROOT / "sql")


def resolve_join(value: Any, resolve: Any = None) -> str:
    """Flatten an Fn::Join of a definition string; unresolvable parts become resolve(part) or "TOKEN"."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(
        part if isinstance(part, str) else (resolve(part) if resolve else "TOKEN") for part in parts
    )


def definition_of(synth: Synthesis, pipeline: str, resolve: Any = None) -> dict[str, Any]:
    """The ASL of a pipeline's state machine, tokens flattened."""
    name = f"{synth.stack.stack_name}-{pipeline}"
    for resource in synth.resources("AWS::StepFunctions::StateMachine").values():
        if resource["Properties"]["StateMachineName"] == name:
            return json.loads(resolve_join(resource["Properties"]["DefinitionString"], resolve))  # type: ignore[no-any-return]
    raise AssertionError(f"no state machine {name}")


def states_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of an ASL definition by name, also inside Parallel branches and a Map's iteration."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = state
        for branch in [
            *state.get("Branches", []),
            *([state["ItemProcessor"]] if "ItemProcessor" in state else []),
        ]:
            found |= states_of(branch)
    return found


def pipeline_in_moto(
    request: pytest.FixtureRequest, synth_fixture: str, pipeline: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """A pipeline's state machine of a synth fixture in moto's interpreter; what a test left running is
    stopped after it, so moto's interpreter threads do not run on into the next test."""
    # moto is imported by the tiers that run it, not by every test session.
    from tests.infra.moto_harness import moto_harness, stop_leftovers  # noqa: PLC0415

    synth: Synthesis = request.getfixturevalue(synth_fixture)
    for harness in moto_harness(synth, pipeline, monkeypatch):
        yield harness
        stop_leftovers(harness)
        # Still inside this test's moto: a stopped execution's thread ends its current state first (a
        # Lambda handler, a task's last poll); let it, rather than have it call the next test's moto.
        _join_interpreter_threads(INTERPRETER_END_SECONDS)


#: How long the end of a test waits for moto's interpreter threads of its stopped executions.
INTERPRETER_END_SECONDS = 60.0


def _join_interpreter_threads(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        # A live thread still holds its target; moto's interpreter runs in moto.stepfunctions' own.
        target = getattr(thread, "_target", None)
        if thread is not threading.current_thread() and "moto.stepfunctions" in getattr(
            target, "__module__", ""
        ):
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The test module's PIPELINE ("nightly" if it names none) of its SYNTH fixture ("test_synth" if it
    names none) in moto's interpreter: the one harness fixture of every tier that runs a state machine."""
    synth_fixture = getattr(request.module, "SYNTH", "test_synth")
    yield from pipeline_in_moto(
        request, synth_fixture, getattr(request.module, "PIPELINE", "nightly"), monkeypatch
    )


@pytest.fixture
def adhoc(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The adhoc test pipeline (max_concurrent_runs = 2, one step, a master-only cluster) in moto."""
    yield from pipeline_in_moto(request, "test_synth", "adhoc", monkeypatch)
