"""Shell completion for the `nightshift` command, generated from its argparse parser."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

#: The function bash calls; a name of ours, so it cannot clash with another command's completion.
FUNCTION = "_nightshift_complete"


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(
        action, argparse._HelpAction | argparse._VersionAction | argparse._StoreConstAction
    )


def bash_script(parser: argparse.ArgumentParser, command: str = "nightshift") -> str:
    """A bash completion script: options, the choices of an option that has them, paths elsewhere.

    Generated from the parser itself, so a new flag completes without editing this module.
    """
    words = sorted(name for action in _options(parser) for name in action.option_strings)
    cases: list[str] = []
    for action in _options(parser):
        if not _takes_value(action) or action.nargs == "?":
            continue
        names = "|".join(action.option_strings)
        if action.choices is not None:
            values = " ".join(str(choice) for choice in action.choices)
            reply = f'COMPREPLY=($(compgen -W {shlex.quote(values)} -- "$cur"))'
        elif action.type is Path:
            # A local file or folder (--state-dir, --key); --remote-dir is the master's, not one here.
            reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
        else:
            # A value only the user knows (a date, a host, NAME=VALUE): offer nothing rather than files.
            reply = "COMPREPLY=()"
        cases.append(f"        {names}) {reply}; return 0 ;;")
    return "\n".join(
        [
            f'# bash completion for {command}: eval "$({command} --completion bash)" in ~/.bashrc',
            f"{FUNCTION}() {{",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
            '    case "$prev" in',
            *cases,
            "    esac",
            '    if [[ "$cur" == -* ]]; then',
            f'        COMPREPLY=($(compgen -W {shlex.quote(" ".join(words))} -- "$cur"))',
            "    else",
            # PATH: a step file or a pipeline folder.
            '        COMPREPLY=($(compgen -f -- "$cur"))',
            "    fi",
            "}",
            f"complete -o filenames -F {FUNCTION} {command}",
            "",
        ]
    )


class CompletionAction(argparse.Action):
    """`--completion bash`: print the script and exit, as --version does (nothing else runs)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        # As argparse's own --version: the script on stdout, then exit 0.
        parser._print_message(bash_script(parser), sys.stdout)
        parser.exit()
