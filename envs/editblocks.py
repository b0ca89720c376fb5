"""Search/replace edit blocks: parsing and applying them to a file's text.

    edit path/to/file.py
    <<<<<<< SEARCH
    exact lines to find
    =======
    the lines to put there instead
    >>>>>>> REPLACE

This module stands alone (standard library only, Python 3.6 syntax): the code environment
imports it, and the SWE-bench adapter runs its source inside the task's container, whose Python
may be old, so that an edit means the same thing everywhere. Run as a script, it applies the
edit given as base64 JSON ``{"action": ..., "workdir": ...}`` and prints the observation.
"""

import base64
import json
import os
import re
import sys

_BLOCK = re.compile(r"<<<<<<< SEARCH\n(.*?)\n?=======\n(.*?)\n?>>>>>>> REPLACE", re.S)
NO_BLOCK = ("Error: no edit block. After `edit <path>` write:\n<<<<<<< SEARCH\n"
            "<exact lines>\n=======\n<new lines>\n>>>>>>> REPLACE")


class EditError(ValueError):
    """An edit that cannot be applied; the message is the agent's observation."""


def is_edit(action):
    return action.lstrip().startswith("edit ")


def format_edit(path, search, replace):
    """An ``edit`` action replacing ``search`` with ``replace`` in ``path``."""
    search, replace = search.rstrip("\n"), replace.rstrip("\n")
    return f"edit {path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def parse_edit(action):
    """(path, [(search, replace), ...]) of an ``edit`` action; EditError when malformed."""
    head, _, body = action.strip().partition("\n")
    path = head[len("edit"):].strip()
    if not path:
        raise EditError("Error: name the file: `edit path/to/file.py` on the first line.")
    blocks = _BLOCK.findall(body + "\n")
    if not blocks:
        raise EditError(NO_BLOCK)
    return path, blocks


def replace_blocks(text, blocks, path):
    """``text`` with each block's SEARCH text (which must occur exactly once) replaced."""
    for search, replace in blocks:
        count = text.count(search) if search else 0
        if count != 1:
            problem = "was not found" if count == 0 else f"occurs {count} times"
            hint = " and include more lines to make them unique." if count else "."
            raise EditError(f"Error: the SEARCH text {problem} in {path}; nothing was changed. "
                            f"Copy the lines exactly (see them with `grep -n` or `sed -n`){hint}")
        text = text.replace(search, replace, 1)
    return text


def edited(path, blocks):
    """The observation after an edit of ``path`` with ``blocks``."""
    n = len(blocks)
    return f"Edited {path} ({n} block{'s' if n > 1 else ''} replaced)."


def main(payload):
    """Apply the edit in ``payload`` (base64 JSON) to the local file system."""
    request = json.loads(base64.b64decode(payload).decode("utf-8"))
    try:
        path, blocks = parse_edit(request["action"])
        target = os.path.join(request.get("workdir", "."), path)
        if not os.path.isfile(target):
            raise EditError(f"Error: {path} does not exist (create files with a shell "
                            "command).")
        with open(target, encoding="utf-8") as f:
            text = f.read()
        text = replace_blocks(text, blocks, path)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    except EditError as exc:
        print(exc)
        return 1
    print(edited(path, blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
