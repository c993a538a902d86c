"""The CLI's help and entry points: human names for every value, --version, shell completion."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

import archspec
from archspec.cli import app


def _commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        yield (*prefix, name)


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("command", [(), *COMMANDS], ids=lambda c: " ".join(c) or "archspec")
def test_help_names_values_for_people(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    for machine in ("<bool>", "<list[", "<path>", "<str>", "<int", "<float", "{spec", "{runs", "{specs", "{recipe"):
        assert machine not in text, (machine, text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"[{}]", usage), usage


def test_usage_lines_name_the_arguments():
    def usage(*command):
        text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        return next(line for line in text.splitlines() if "Usage:" in line).strip()

    assert usage("train").endswith("archspec train [OPTIONS] SPEC")
    assert usage("compare").endswith("archspec compare [OPTIONS] RUN...")
    assert usage("validate").endswith("archspec validate [OPTIONS] [SPEC...]")  # none with --kinds
    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--set\s+KEY=VALUE", text) and re.search(r"--epochs\s+N", text)
    assert re.search(r"--log-every\s+SECONDS", text) and re.search(r"--threads\s+N", text)


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"archspec {archspec.__version__}")


def test_shell_completion_is_offered_and_completes_commands():
    result = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "_archspec_completion" in result.output
    completed = CliRunner().invoke(app, [], env={"_ARCHSPEC_COMPLETE": "complete_bash", "COMP_WORDS": "archspec tr",
                                                 "COMP_CWORD": "1"}, prog_name="archspec")
    assert "train" in completed.output.split()
