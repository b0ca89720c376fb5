"""MiniWoB++ pages and the task lists of the web environment.

The task pages come from the ``miniwob`` wheel (MIT licence), read as data: its HTML, CSS and
JavaScript are extracted once into ``LBI_HOME/data/web/miniwob`` and served as ``file://``
URLs; BrowserGym's MiniWoB tasks (``browsergym-miniwob``) drive and score them.

Benchmark: ``BENCHMARK_TASKS`` × ``BENCHMARK_SEEDS`` (seeds 1000+). Synthesis only ever sees
seeds below ``SYNTH_SEED_LIMIT``, so no benchmark episode (task page + random instance) is seen
during synthesis. The tasks are the ones a text-only agent can do with element actions
(``click``, ``fill``, ``select_option``, ``press``); tasks that need pixel coordinates (drawing,
dragging shapes) are left out.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from lbi.assets import lbi_home, package_archive

MINIWOB_PACKAGE = ("miniwob", "1.1.0")
HTML_PREFIX = "miniwob/html/"

BENCHMARK_TASKS = ["click-button", "click-checkboxes", "click-dialog", "click-link",
                   "click-option", "click-tab", "enter-password", "enter-text", "focus-text",
                   "login-user", "navigate-tree", "use-autocomplete"]
BENCHMARK_SEEDS = [1000, 1001]
SYNTH_TASKS = BENCHMARK_TASKS + ["click-button-sequence", "click-collapsible", "click-test",
                                 "click-widget", "enter-text-dynamic", "choose-list",
                                 "email-inbox", "social-media", "search-engine", "book-flight"]
SYNTH_SEED_LIMIT = 1000


def html_dir() -> Path:
    """The MiniWoB++ HTML tree (``…/html``), extracted from the wheel once."""
    dest = lbi_home() / "data" / "web" / "miniwob" / "html"
    if (dest / "miniwob" / "click-button.html").is_file():
        return dest
    archive = package_archive(*MINIWOB_PACKAGE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging, [m for m in zf.namelist() if m.startswith(HTML_PREFIX)])
        shutil.rmtree(dest, ignore_errors=True)
        (staging / HTML_PREFIX).rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def base_url() -> str:
    """The ``MINIWOB_URL`` BrowserGym needs (a ``file://`` folder URL ending in /)."""
    return (html_dir() / "miniwob").as_uri() + "/"
