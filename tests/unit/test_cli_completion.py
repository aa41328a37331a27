"""`nightshift --completion bash`: the script, sourced in a real bash, completes what the parser accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: The console script `make setup` installs beside the venv's python.
NIGHTSHIFT = Path(sys.executable).parent / "nightshift"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = subprocess.run([NIGHTSHIFT, "--completion", "bash"], capture_output=True, check=False)
    assert (made.returncode, made.stderr) == (0, b"")
    path = tmp_path_factory.mktemp("completion") / "nightshift.bash"
    path.write_bytes(made.stdout)
    return path


def complete(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    """What bash offers for the last of `words`, as it would after a Tab (the completion function
    `complete -p nightshift` names, called with the COMP_ variables bash sets)."""
    line = " ".join(["nightshift", *words])
    driver = (
        f"source {script}\n"
        "spec=$(complete -p nightshift) || exit 3\n"
        "function=${spec##*-F }; function=${function%% *}\n"
        'read -ra COMP_WORDS <<<"$LINE"\n'
        '[[ $LINE == *" " ]] && COMP_WORDS+=("")\n'
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "COMP_LINE=$LINE; COMP_POINT=${#LINE}\n"
        '"$function" nightshift "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", driver],
        capture_output=True,
        check=False,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "LINE": line},
    )
    assert (done.returncode, done.stderr) == (0, b""), done
    return [word for word in done.stdout.decode().split("\n") if word]


def test_dep_completes_to_deployed(script: Path) -> None:
    assert complete(script, "sql/example/", "--dep") == ["--deployed"]
    assert complete(script, "--stop") == ["--stop", "--stop-engine"]


def test_an_option_with_choices_completes_its_values(script: Path) -> None:
    assert complete(script, "--engine", "spark-") == ["spark-sql", "spark-submit"]
    assert complete(script, "--log-format", "") == ["text", "json"]


def test_path_completes_files_and_folders_and_a_free_value_nothing(script: Path, tmp_path: Path) -> None:
    (tmp_path / "sales").mkdir()
    (tmp_path / "sales_notes.txt").write_text("")
    # compgen -f gives the folder's order; bash sorts what it shows.
    assert sorted(complete(script, "sa", cwd=tmp_path)) == ["sales", "sales_notes.txt"]
    assert sorted(complete(script, "--state-dir", "sales", cwd=tmp_path)) == ["sales", "sales_notes.txt"]
    # A date, a host, NAME=VALUE: only the user knows them; file names would be wrong guesses.
    assert complete(script, "--run-date", "sa", cwd=tmp_path) == []


def test_a_shell_it_has_no_script_for_is_one_line_and_exit_2() -> None:
    done = subprocess.run([NIGHTSHIFT, "--completion", "fish"], capture_output=True, check=False)
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "nightshift: error: argument --completion: invalid choice: 'fish' (choose from 'bash')"
        " (see nightshift --help)"
    ]
