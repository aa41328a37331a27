"""[inputs]: strict validation, the paths of a run, and the gate's check-once and wait-until-deadline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast, get_args

import pytest

from runner.config import RESERVED_VARIABLES, Inputs, expand_input, parse_config
from runner.errors import ConfigError, ConnectionFailure, UsageError
from runner.execution import Executor, Invocation, Outcome, RunPlan, StepResult, StopRequest
from runner.inputs import (
    EXIT_INPUTS_MISSING,
    ClusterInputs,
    GateMode,
    InputPath,
    InputsCheckFailed,
    InputsMissing,
    LocalInputs,
    check_script,
    gate_inputs,
    gate_mode,
    input_paths,
)
from runner.model import Engine, Pipeline, Stage, Step
from runner.output import Output, StepOutput, Stream

PATH = Path("sql/demo/pipeline.toml")
#: the gate only asks the executor for a checker when none is given
NO_EXECUTOR = cast(Executor, None)
VARIABLES = """
[variables]
raw_path = "s3://lake/raw"

[variables.local]
raw_path = "data/raw"
"""


def inputs_of(section: str, variables: str = VARIABLES) -> Inputs:
    config = parse_config(variables + "\n[inputs]\n" + section, PATH)
    assert config.inputs is not None
    return config.inputs


def test_full_section_is_read():
    inputs = inputs_of(
        """
objects = ["${raw_path}/events/dt=${run_date}/_SUCCESS"]
prefixes = ["${raw_path}/users/dt=${run_date}/"]
wait_minutes = 180
poll_minutes = 0.5
"""
    )
    assert inputs == Inputs(
        objects=("${raw_path}/events/dt=${run_date}/_SUCCESS",),
        prefixes=("${raw_path}/users/dt=${run_date}/",),
        wait_minutes=180,
        poll_minutes=0.5,
    )
    assert input_paths(inputs, {"raw_path": "s3://lake/raw", "run_date": "2025-06-01"}) == [
        InputPath("object", "s3://lake/raw/events/dt=2025-06-01/_SUCCESS"),
        InputPath("prefix", "s3://lake/raw/users/dt=2025-06-01/"),
    ]


def test_no_section_means_no_gate():
    assert parse_config(VARIABLES, PATH).inputs is None


@pytest.mark.parametrize(
    ("section", "where", "message"),
    [
        (
            'objects = ["${raw}/x/_SUCCESS"]',
            "[inputs] objects: '${raw}/x/_SUCCESS'",
            "unknown variable ${raw}",
        ),
        (
            'objects = ["${run_date/_SUCCESS"]',
            "[inputs] objects: '${run_date/_SUCCESS'",
            "without its closing",
        ),
        ('objects = ["${hivevar:raw_path}/a"]', "[inputs] objects", "unknown variable ${hivevar:raw_path}"),
        ('prefixes = ["${raw_path}/users"]', "[inputs] prefixes: '${raw_path}/users'", "end it with '/'"),
        ('objects = ["${raw_path}/users/"]', "[inputs] objects", "an object is a file"),
        ('objects = ["${raw_path}/*/_SUCCESS"]', "[inputs] objects", "no wildcards"),
        ('objects = "${raw_path}/a"', "[inputs] objects", "expected a list of paths"),
        ('objects = [""]', "[inputs] objects", "expected a list of paths"),
        ("objects = []", "[inputs]", "at least one path"),
        ('wait_minutes = 10\nobjects = ["/a"]\nretries = 3', "[inputs] retries", "unknown key"),
        ('objects = ["/a"]\nwait_minutes = -1', "[inputs] wait_minutes", "from 0 to 1440"),
        ('objects = ["/a"]\nwait_minutes = true', "[inputs] wait_minutes", "from 0 to 1440"),
        ('objects = ["/a"]\npoll_minutes = 0', "[inputs] poll_minutes", "one second"),
        ('objects = ["/a"]\npoll_minutes = "5"', "[inputs] poll_minutes", "one second"),
    ],
)
def test_mistakes_name_the_key_and_the_path(section: str, where: str, message: str):
    with pytest.raises(ConfigError) as error:
        inputs_of(section)
    assert str(error.value).startswith(f"{PATH}: {where}")
    assert message in str(error.value)


def test_a_variable_only_local_runs_know_is_refused():
    # The deployed run has no [variables.local]: it could never find that path.
    with pytest.raises(ConfigError, match=r"unknown variable \$\{local_only\}"):
        inputs_of('objects = ["${local_only}/a"]', '[variables.local]\nlocal_only = "x"\n')


def test_inputs_is_a_table():
    with pytest.raises(ConfigError, match=r"\[inputs\]: expected a table"):
        parse_config('inputs = ["/a"]', PATH)


# --- the gate ------------------------------------------------------------------------------------


class Recorded(Output):
    def __init__(self) -> None:
        super().__init__()
        self.notices: list[str] = []

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        raise AssertionError("the local gate runs no step")

    def notice(self, message: str, *, step: str = "") -> None:
        self.notices.append(message)


class Arriving:
    """A checker whose paths arrive after a number of checks (None: never)."""

    def __init__(self, arrive_after: int | None) -> None:
        self.arrive_after = arrive_after
        self.checks = 0

    def missing(self, paths: Sequence[InputPath], stop: StopRequest) -> list[InputPath] | None:
        self.checks += 1
        there = self.arrive_after is not None and self.checks > self.arrive_after
        return [] if there else list(paths)


class Clock:
    """Time that passes only when the gate waits: no test sleeps for a poll interval."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedStop(StopRequest):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.now += seconds
        return self.is_set()


def plan(tmp_path: Path, section: str) -> RunPlan:
    config = parse_config(VARIABLES + "\n[inputs]\n" + section, tmp_path / "pipeline.toml")
    step = Step(tmp_path / "10_a.sh", 10, Engine.BASH)
    pipeline = Pipeline("demo", tmp_path, config, (Stage(10, (step,)),))
    return RunPlan.make(pipeline, run_date="2025-06-01", run_id="r1", local=True, overrides={})


SECTION = 'objects = ["${raw_path}/dt=${run_date}/_SUCCESS"]\nwait_minutes = 10\npoll_minutes = 2\n'


def run_gate(tmp_path: Path, checker: Arriving, mode: GateMode) -> tuple[bool, Recorded, TimedStop]:
    clock = Clock()
    stop = TimedStop(clock)
    output = Recorded()
    result = gate_inputs(
        plan(tmp_path, SECTION),
        NO_EXECUTOR,
        output,
        stop,
        mode=mode,
        checker=checker,
        clock=clock,
    )
    return result, output, stop


def test_on_time_passes_at_the_first_check(tmp_path):
    checker = Arriving(0)
    passed, output, stop = run_gate(tmp_path, checker, "wait")
    assert passed and checker.checks == 1 and stop.waits == []
    assert output.notices == ["inputs: all 1 there for 2025-06-01"]


def test_late_passes_after_some_polls(tmp_path):
    checker = Arriving(3)
    passed, output, stop = run_gate(tmp_path, checker, "wait")
    assert passed and checker.checks == 4
    assert stop.waits == [120, 120, 120]
    assert output.notices[0].startswith(
        "inputs: waiting for 1 of 1 for 2025-06-01: data/raw/dt=2025-06-01/_SUCCESS;"
    )
    assert output.notices[-1] == "inputs: all 1 there for 2025-06-01 after 6 min (4 checks)"


def test_never_fails_at_the_deadline_naming_the_path(tmp_path):
    checker = Arriving(None)
    with pytest.raises(InputsMissing) as error:
        run_gate(tmp_path, checker, "wait")
    assert error.value.exit_code == EXIT_INPUTS_MISSING == 75
    assert str(error.value) == (
        "inputs missing for 2025-06-01 after waiting 10 min (6 checks): data/raw/dt=2025-06-01/_SUCCESS"
    )
    assert checker.checks == 6  # at 0, 2, 4, 6, 8 and 10 minutes


def test_by_default_one_check_and_no_wait(tmp_path):
    checker = Arriving(1)
    with pytest.raises(InputsMissing, match=r"^inputs missing for 2025-06-01: data/raw/.*--wait waits"):
        run_gate(tmp_path, checker, "once")
    assert checker.checks == 1


def test_skip_checks_nothing(tmp_path):
    checker = Arriving(None)
    passed, output, _ = run_gate(tmp_path, checker, "skip")
    assert passed and checker.checks == 0 and output.notices == []


def test_a_signal_ends_the_wait(tmp_path):
    clock = Clock()
    stop = TimedStop(clock)
    stop.trigger(15)
    passed = gate_inputs(
        plan(tmp_path, SECTION),
        NO_EXECUTOR,
        Recorded(),
        stop,
        mode="wait",
        checker=Arriving(None),
        clock=clock,
    )
    assert passed is False


@pytest.mark.parametrize(
    ("wait", "no_wait", "whole", "mode"),
    [(False, False, True, "once"), (False, False, False, "skip"), (True, False, False, "wait"),
     (True, False, True, "wait"), (False, True, True, "skip")],
)  # fmt: skip
def test_gate_mode(wait, no_wait, whole, mode):
    assert gate_mode(wait=wait, no_wait=no_wait, whole_pipeline=whole) == mode


# --- the local view -------------------------------------------------------------------------------


def test_local_files_and_folders(tmp_path):
    marker = tmp_path / "events" / "_SUCCESS"
    folder = tmp_path / "users"
    paths = [InputPath("object", str(marker)), InputPath("prefix", f"file://{folder}/")]
    stop = StopRequest()
    assert LocalInputs().missing(paths, stop) == paths
    folder.mkdir()
    (tmp_path / "events").mkdir()
    assert LocalInputs().missing(paths, stop) == paths  # an empty folder is no data yet
    (folder / "nested").mkdir()
    (folder / "nested" / "part-0").write_text("x")
    marker.mkdir()  # a folder named like the marker is not the marker
    assert LocalInputs().missing(paths, stop) == [paths[0]]
    marker.rmdir()
    marker.write_text("")
    assert LocalInputs().missing(paths, stop) == []


def test_an_s3_path_cannot_be_checked_locally():
    with pytest.raises(UsageError, match=r"s3://lake/a: a s3:// path cannot be checked on the local engine"):
        LocalInputs().missing([InputPath("object", "s3://lake/a")], StopRequest())


def test_check_script_quotes_every_path():
    script = check_script(
        "demo", [InputPath("object", "s3://b/it's here/_SUCCESS"), InputPath("prefix", "/d $x/")]
    )
    assert "hadoop fs -test -f 's3://b/it'\"'\"'s here/_SUCCESS' || missing 0" in script
    assert "hadoop fs -count '/d $x/'" in script and "|| missing 1" in script


# --- one contract, two sides -----------------------------------------------------------------------


def test_the_lambda_reads_paths_as_the_runner_writes_them():
    from lambdas.shared.inputs import resolve  # noqa: PLC0415 - the Lambda's side
    from lambdas.shared.models import RUN_DATE_REFERENCE, InputToCheck  # noqa: PLC0415

    declared = "s3://lake/raw/${run_date}/events/dt=${run_date}/_SUCCESS"
    sent = expand_input(declared, {"run_date": RUN_DATE_REFERENCE})  # as infra/inputs.py sends it
    assert "${" not in sent  # CloudFormation reads ${...} in a state machine definition
    assert resolve(sent, "2025-06-01") == expand_input(declared, {"run_date": "2025-06-01"})
    assert "run_date" in RESERVED_VARIABLES
    kinds = set(get_args(InputToCheck.model_fields["kind"].annotation))
    assert kinds == {kind for kind, _ in Inputs(objects=("a",), prefixes=("b/",)).paths}


# --- on a cluster: what the check's run tells the runner ------------------------------------------


class ScriptedExecutor:
    """Stands in for the SSH executor: checks the uploaded script, then answers as the master would."""

    parallel = True

    def __init__(self, stdout: bytes, stderr: bytes, result: StepResult) -> None:
        self.stdout, self.stderr, self.result = stdout, stderr, result
        self.scripts: list[str] = []

    def describe(self, invocation: Invocation) -> str:
        return "scripted"

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        assert invocation.engine is Engine.BASH and invocation.variables == {"run_date": "2025-06-01"}
        self.scripts.append(invocation.step.path.read_text())
        output.feed("stdout", self.stdout)
        output.feed("stderr", self.stderr)
        return self.result


class Shown(Recorded):
    def __init__(self) -> None:
        super().__init__()
        self.stderr = bytearray()

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        shown = self

        class _Step(StepOutput):
            def emit(self, stream: Stream, block: bytes) -> None:
                shown.stderr += block

        return _Step(lambda message: shown.notices.append(f"{label}: {message}"))


def cluster_check(
    tmp_path: Path, executor: ScriptedExecutor, shown: Shown | None = None
) -> tuple[list[InputPath] | None, Shown]:
    run = plan(tmp_path, 'objects = ["${raw_path}/a/_SUCCESS"]\nprefixes = ["${raw_path}/b/", "/c/"]\n')
    shown = shown or Shown()
    paths = [InputPath("object", "s3://lake/raw/a/_SUCCESS"), InputPath("prefix", "s3://lake/raw/b/")]
    paths.append(InputPath("prefix", "/c/"))
    return ClusterInputs(executor, run, shown).missing(paths, StopRequest()), shown


def test_the_masters_answer_names_the_missing_ones(tmp_path: Path) -> None:
    executor = ScriptedExecutor(b"missing 0\nmissing 2\n", b"", StepResult(3))
    missing, shown = cluster_check(tmp_path, executor)
    assert missing == [InputPath("object", "s3://lake/raw/a/_SUCCESS"), InputPath("prefix", "/c/")]
    (script,) = executor.scripts
    assert "hadoop fs -test -f s3://lake/raw/a/_SUCCESS || missing 0" in script
    assert shown.stderr == b""


def test_a_master_without_hadoop_fails_the_check_with_its_stderr_shown(tmp_path: Path) -> None:
    executor = ScriptedExecutor(b"", b"nightshift: no hadoop command here\n", StepResult(127))
    shown = Shown()
    with pytest.raises(InputsCheckFailed, match=r"the inputs check failed on the cluster \(exit 127\)"):
        cluster_check(tmp_path, executor, shown)
    assert shown.stderr == b"nightshift: no hadoop command here\n"
    # The failure is the check's, not "inputs missing": exit 1, not 75.
    assert InputsCheckFailed("x").exit_code == 1


def test_an_unreachable_master_is_a_connection_failure(tmp_path: Path) -> None:
    executor = ScriptedExecutor(b"", b"", StepResult(255, Outcome.UNREACHABLE))
    with pytest.raises(ConnectionFailure) as error:
        cluster_check(tmp_path, executor)
    assert error.value.exit_code == 255


def test_a_stopped_check_reports_no_answer(tmp_path: Path) -> None:
    executor = ScriptedExecutor(b"", b"", StepResult(143, Outcome.STOPPED))
    assert cluster_check(tmp_path, executor)[0] is None
