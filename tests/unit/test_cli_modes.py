"""The one table of where each flag applies (runner.__main__.FLAG_MODES), read by every refusal of a flag."""

from __future__ import annotations

import pytest

from runner.__main__ import FLAG_MODES, _check_flag_modes, build_parser
from runner.errors import UsageError

#: Flags that apply in every mode, or are checked by a rule of their own (--checks-only and --stage).
EVERYWHERE = {
    "--help",
    "--version",
    "--completion",
    "--deployed",
    "--run-date",
    "--log-format",
    "--strict",
    "--checks-only",
    "--stage",
}


def test_every_flag_of_the_command_line_says_where_it_applies() -> None:
    flags = {option for action in build_parser()._actions for option in action.option_strings}
    long_flags = {flag for flag in flags if flag.startswith("--")}
    assert long_flags - {flag.name for flag in FLAG_MODES} == EVERYWHERE
    assert {flag.name for flag in FLAG_MODES} <= long_flags


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--deployed", "--remote-dir", "/x", "--wait"], "--remote-dir, --wait: not with --deployed"),
        (
            ["--deployed", "--as-deployed", "--concurrency", "2"],
            "--concurrency, --as-deployed: only when starting",
        ),
        (
            ["--cluster-id", "j-1", "--engine-idle-minutes", "2"],
            "--reset and --state-dir apply to the local engine",
        ),
        (["--keep-remote", "--port", "22"], "--port, --keep-remote: only with --host or --cluster-id"),
        (["--stack", "s"], "--stack: only with --deployed"),
    ],
)
def test_a_flag_out_of_its_place_is_refused_by_the_table(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}"):
        _check_flag_modes(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["--deployed", "--start", "--rerun", "--from-stage", "30", "--region", "r", "--stack", "s"],
        ["--host", "h", "--user", "u", "--var", "a=1", "--from-stage", "10", "--run-id", "x"],
        ["--state-dir", "s", "--cold", "--remote-dir", "/x", "--dry-run", "--engine", "hive"],
    ],
)
def test_flags_in_their_place_pass(argv: list[str]) -> None:
    _check_flag_modes(build_parser().parse_args(argv))
