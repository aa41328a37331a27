"""Engines run under a UTF-8 locale on a master whose sessions have none (an sshd that takes no LANG)."""

from __future__ import annotations

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd

UTF8_CLIENT = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def test_a_bash_step_counts_characters_not_bytes_without_a_session_locale(no_env_cli: Cli) -> None:
    step = no_env_cli.step("10_chars.sh", "printf '%s' 'ünï' | wc -m\necho \"${LC_ALL:-unset}\"\n")

    result = no_env_cli.run(step, env=UTF8_CLIENT)  # sent, and refused by this server

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"3\nC.UTF-8\n"


def test_a_session_locale_that_is_already_utf8_is_left_alone(cli: Cli) -> None:
    step = cli.step("10_chars.sh", "printf '%s' 'ünï' | wc -m\necho \"${LC_ALL:-unset} $LANG\"\n")

    result = cli.run(step, env={"LANG": "C.UTF-8", "LC_ALL": ""})

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"3\nunset C.UTF-8\n"


@pytest.mark.spark
def test_spark_sql_reads_and_prints_utf8_without_a_session_locale(no_env_cli: Cli) -> None:
    step = no_env_cli.step("10_chars.sql", "SELECT length('ünïcødé ✓ 日本語'), upper('straße');\n")

    result = no_env_cli.run(step, env=UTF8_CLIENT)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"13\tSTRASSE\n"
