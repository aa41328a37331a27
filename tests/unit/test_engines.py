"""Engine command lines: the step is always a file argument; variables use the engine's own mechanism."""

from __future__ import annotations

from runner.engines import Command, engine_command, utf8_locale
from runner.model import Engine

VARIABLES = {"run_date": "2026-11-20", "path": "s3://b/it's here"}


def test_sql_engines_read_the_file_and_get_hivevars() -> None:
    assert engine_command(Engine.SPARK_SQL, "/runs/10_a.sql", VARIABLES) == Command(
        (
            "spark-sql",
            "--hivevar",
            "run_date=2026-11-20",
            "--hivevar",
            "path=s3://b/it's here",
            "-f",
            "/runs/10_a.sql",
        )
    )
    hive = engine_command(Engine.HIVE, "/runs/20_b.hql", {"run_date": "2026-11-20"})
    assert hive.argv == ("hive", "--hivevar", "run_date=2026-11-20", "-f", "/runs/20_b.hql")
    assert hive.env == {}


def test_spark_submit_and_bash_get_variables_as_environment() -> None:
    submit = engine_command(Engine.SPARK_SUBMIT, "/r/40_m.py", VARIABLES, engine_args=("--master", "yarn"))
    assert submit.argv == ("spark-submit", "--master", "yarn", "/r/40_m.py")
    assert submit.env == VARIABLES
    bash = engine_command(Engine.BASH, "/r/50_e.sh", VARIABLES, engine_args=("ignored",))
    assert bash.argv == ("bash", "/r/50_e.sh")
    assert bash.env == VARIABLES


def test_binaries_and_engine_args_are_placed_before_the_file() -> None:
    command = engine_command(
        Engine.HIVE,
        "/r/x.hql",
        {},
        binaries={Engine.HIVE: "/opt/spark/bin/spark-sql"},
        engine_args=("--conf", "a=b"),
    )
    assert command.argv == ("/opt/spark/bin/spark-sql", "--conf", "a=b", "-f", "/r/x.hql")


def test_display_quotes_for_a_shell() -> None:
    command = engine_command(Engine.BASH, "/r/my step.sh", {"who": "it's me"})
    assert command.display() == "who='it'\"'\"'s me' bash '/r/my step.sh'"


def test_an_engine_gets_a_utf8_locale_only_when_the_environment_has_none() -> None:
    for utf8 in ({"LANG": "en_US.UTF-8"}, {"LC_CTYPE": "de_DE.utf8"}, {"LC_ALL": "C.UTF-8", "LANG": "C"},
                 {"LANG": "sr_RS.UTF-8@latin"}, {"LC_ALL": "", "LANG": "C.utf-8"}):  # fmt: skip
        assert utf8_locale(utf8) == {}, utf8
    for other in ({}, {"LANG": "C"}, {"LANG": "POSIX"}, {"LANG": "de_DE.ISO-8859-1"},
                  {"LC_ALL": "C", "LANG": "en_US.UTF-8"}, {"LC_CTYPE": "en_US", "LANG": "en_US.UTF-8"}):  # fmt: skip
        assert utf8_locale(other) == {"LC_ALL": "C.UTF-8"}, other
