"""CodeAct-style actions for SWE-bench, translated into shell commands for the task container.

An action is a bash command, an ``edit`` block (``lbi.envs.editblocks``) or ``submit``. The
command runs in the container's repository with the working directory carried over between
actions; an edit becomes a command that runs the edit-block applier inside the container.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lbi.envs import editblocks
from lbi.envs.base import FINISH_ACTIONS


@cache
def _applier_source() -> str:
    """The source of ``editblocks``, base64-encoded for a ``python -c`` in the container."""
    return base64.b64encode(Path(editblocks.__file__).read_bytes()).decode()


@dataclass(frozen=True)
class Command:
    """A shell command for the container, and the marker its last output line carries."""

    script: str
    marker: str


def edit_command(action: str, workdir: str) -> str:
    """A shell command that applies the ``edit`` action inside the container."""
    payload = base64.b64encode(json.dumps({"action": action, "workdir": workdir}).encode())
    source = _applier_source()
    # run as __main__, the applier reads the payload from argv and exits with its status
    program = f"import base64; exec(compile(base64.b64decode('{source}'), 'editblocks', 'exec'))"
    runner = "$(command -v python3 || command -v python)"
    return f"{runner} -c {shlex.quote(program)} {payload.decode()}"


def to_command(action: str, cwd: str) -> Command | None:
    """The container command for ``action`` run in ``cwd`` (None: the agent submitted).

    The command prints a marker, its exit code and the final working directory last, so that
    ``cd`` carries over to the next action.
    """
    text = action.strip()
    if text.lower() in FINISH_ACTIONS:
        return None
    body = edit_command(text, cwd) if editblocks.is_edit(text) else text
    marker = f"__LBI_CWD_{secrets.token_hex(6)}__"
    # the EXIT trap reports the status and directory even when the action itself calls `exit`
    report = f"printf '\\n%s%s %s\\n' '{marker}' \"$?\" \"$(pwd)\""
    script = f"cd {shlex.quote(cwd)} || exit 1\ntrap {shlex.quote(report)} EXIT\n{body}"
    return Command(script=script, marker=marker)


def split_output(output: str, marker: str, cwd: str) -> tuple[str, int | None, str]:
    """(the command's output, its exit code, the working directory it ended in); without the
    marker (the command was killed or exited early) the code is None and ``cwd`` unchanged."""
    head, found, tail = output.rpartition(marker)
    if not found:
        return output, None, cwd
    code, _, new_cwd = tail.strip().partition(" ")
    return head.rstrip("\n"), int(code), new_cwd or cwd
