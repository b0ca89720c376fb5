"""MiniWoB++ pages and the task lists of the web environment.

The task pages come from the ``miniwob`` wheel (MIT licence), read as data: its HTML, CSS and
JavaScript are extracted once into ``LBI_HOME/data/web/miniwob`` and served as ``file://``
URLs; BrowserGym's MiniWoB tasks (``browsergym-miniwob``) drive and score them.

Benchmark: ``BENCHMARK_TASKS`` × ``BENCHMARK_SEEDS`` (seeds 1000+): every MiniWoB++ task a
text-only agent can do with element actions (``click``, ``fill``, ``select_option``,
``press``), 89 of the 125; ``EXCLUDED`` says why the others are left out (pixel coordinates,
drawing and dragging, answers only in a picture, real-time play). Synthesis only ever sees seeds
below ``SYNTH_SEED_LIMIT``, so no benchmark episode (task page + random instance) is seen during
synthesis.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from lbi.assets import lbi_home, package_archive

MINIWOB_PACKAGE = ("miniwob", "1.1.0")
HTML_PREFIX = "miniwob/html/"

ALL_TASKS = (  # noqa: SIM905 - 125 names read better as words than as a list literal
    "ascending-numbers bisect-angle book-flight book-flight-nodelay buy-ticket choose-date "
    "choose-date-easy choose-date-medium choose-date-nodelay choose-list circle-center "
    "click-button click-button-sequence click-checkboxes click-checkboxes-large "
    "click-checkboxes-soft click-checkboxes-transfer click-collapsible click-collapsible-2 "
    "click-collapsible-2-nodelay click-collapsible-nodelay click-color click-dialog "
    "click-dialog-2 click-link click-menu click-menu-2 click-option click-pie click-pie-nodelay "
    "click-scroll-list click-shades click-shape click-tab click-tab-2 click-tab-2-easy "
    "click-tab-2-hard click-tab-2-medium click-test click-test-2 click-test-transfer "
    "click-widget copy-paste copy-paste-2 count-shape count-sides daily-calendar drag-box "
    "drag-circle drag-cube drag-items drag-items-grid drag-shapes drag-shapes-2 "
    "drag-single-shape drag-sort-numbers draw-circle draw-line email-inbox email-inbox-delete "
    "email-inbox-forward email-inbox-forward-nl email-inbox-forward-nl-turk "
    "email-inbox-important email-inbox-nl-turk email-inbox-noscroll email-inbox-reply "
    "email-inbox-star-reply enter-date enter-password enter-text enter-text-2 "
    "enter-text-dynamic enter-time find-greatest find-midpoint find-word focus-text "
    "focus-text-2 form-sequence form-sequence-2 form-sequence-3 generate-number "
    "grid-coordinate guess-number highlight-text highlight-text-2 hot-cold identify-shape "
    "login-user login-user-popup multi-layouts multi-orderings navigate-tree number-checkboxes "
    "odd-or-even order-food phone-book read-table read-table-2 resize-textarea right-angle "
    "scroll-text scroll-text-2 search-engine sign-agreement simple-algebra simple-arithmetic "
    "social-media social-media-all social-media-some stock-market terminal text-editor "
    "text-transform tic-tac-toe unicode-test use-autocomplete use-autocomplete-nodelay "
    "use-colorwheel use-colorwheel-2 use-slider use-slider-2 use-spinner visual-addition"
).split()
"""The 125 MiniWoB++ tasks of BrowserGym's ``miniwob`` benchmark."""
_PIXELS = "needs pixel coordinates or mouse gestures (drag, draw, select a text range)"
_VISUAL = "the answer is only in the picture (shapes, colours, angles), not in the page text"
EXCLUDED: dict[str, str] = {
    **{name: _PIXELS for name in [
        "bisect-angle", "circle-center", "daily-calendar", "drag-box", "drag-circle",
        "drag-cube", "drag-items", "drag-items-grid", "drag-shapes", "drag-shapes-2",
        "drag-single-shape", "drag-sort-numbers", "draw-circle", "draw-line", "find-midpoint",
        "grid-coordinate", "highlight-text", "highlight-text-2", "resize-textarea",
        "right-angle", "text-editor", "use-colorwheel", "use-colorwheel-2", "use-slider",
        "use-slider-2"]},
    **{name: _VISUAL for name in [
        "click-color", "click-pie", "click-pie-nodelay", "click-shades", "click-shape",
        "count-shape", "count-sides", "identify-shape", "visual-addition"]},
    "hot-cold": "needs timed mouse movement over the page",
    "stock-market": "needs waiting for a moving price in real time",
}
"""Tasks a text agent with element actions cannot do, and why."""
BENCHMARK_TASKS = [name for name in ALL_TASKS if name not in EXCLUDED]
BENCHMARK_SEEDS = [1000, 1001, 1002]
SYNTH_TASKS = BENCHMARK_TASKS
"""The pages synthesis explores (one document and one instance, at a seed below
SYNTH_SEED_LIMIT, per page): every page of the benchmark. What is held out is the benchmark's
instances (seeds >= SYNTH_SEED_LIMIT) and their goals, as in the paper, where synthesis and
evaluation share the environment."""
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
