"""The adapters for the paper's benchmarks, as far as they run without their infrastructure:
WebArena end to end on local stand-in sites (real Chromium, real task records and evaluator from
webarena-verified), SWE-bench's action translation in a real shell, the desktop adapters'
action and observation handling, and the fail-fast messages of each when infrastructure is
missing."""

from __future__ import annotations

import functools
import http.server
import json
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lbi.envs import ENVIRONMENTS, make_env
from lbi.envs.desktop.a11y import linearize
from lbi.envs.desktop.env import translate
from lbi.envs.editblocks import format_edit
from lbi.envs.infra import docker_problem
from lbi.envs.sandbox import Sandbox, SandboxLimits
from lbi.envs.swebench.actions import split_output, to_command
from lbi.envs.webarena import tasks as wa_tasks
from lbi.errors import EnvError
from lbi.types import Task

REPO = Path(__file__).resolve().parents[1]


# ---- WebArena ---------------------------------------------------------------------------------
def test_all_812_webarena_tasks_convert():
    tasks = wa_tasks.load_tasks()
    assert len(tasks) == 812 and len({t.id for t in tasks}) == 812
    kinds = {t.env_args["task_type"] for t in tasks}
    assert kinds == {"RETRIEVE", "NAVIGATE", "MUTATE"}
    for task in tasks:
        assert task.instruction and task.env_args["sites"]
        assert all(u.startswith("__") for u in task.env_args["start_urls"])
    first = next(t for t in tasks if t.env_args["task_id"] == 0)
    assert first.instruction == "Get the top-1 best-selling product name(s) in 2022"
    assert first.env_args["start_urls"] == ["__SHOPPING_ADMIN__"]
    only_gitlab = wa_tasks.load_tasks(sites=["gitlab"])
    assert only_gitlab and all(t.env_args["sites"] == ["gitlab"] for t in only_gitlab)
    with pytest.raises(EnvError, match="unknown WebArena task ids"):
        wa_tasks.load_tasks([5000])


def test_site_placeholders_are_filled_longest_first():
    urls = {"shopping": "http://a:7770/", "shopping_admin": "http://a:7780/admin"}
    assert wa_tasks.fill_urls("__SHOPPING_ADMIN__/sales", urls) == "http://a:7780/admin/sales"
    assert wa_tasks.fill_urls("__SHOPPING__", urls) == "http://a:7770"
    with pytest.raises(EnvError, match="no URL configured"):
        wa_tasks.fill_urls("__GITLAB__/x", urls)


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static pages; a form post is answered like the forum's: 302 back to the start page."""

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(302)
        self.send_header("Location", "/")
        self.end_headers()


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """Local HTTP servers standing in for WebArena's admin, GitLab and forum sites: the same
    pages, one port per site (the evaluator maps URLs back to sites, so they must differ)."""
    root = tmp_path_factory.mktemp("site")
    page = "<html><head><meta charset='utf-8'><title>{}</title></head><body>{}</body></html>"
    (root / "index.html").write_text(page.format(
        "Dashboard", "<h1>Bestsellers 2022</h1><table><tr><td>Quest Lumaflex™ Band</td>"
        "<td>6</td></tr></table><a href='/dashboard/todos'>To-Do List</a>"
        "<form method='post' action='/user/MarvelsGrantMan136/edit_biography'>"
        "<textarea name='user_biography[biography]' aria-label='Biography'></textarea>"
        "<button type='submit'>Save</button></form>"))
    (root / "help.html").write_text(page.format(
        "Help", "<p>" + "A to-do is added when an issue or merge request is assigned to you. " * 5
        + "</p>"))
    (root / "dashboard").mkdir()
    (root / "dashboard" / "todos").write_text(page.format("To-Do List", "<h1>To-Do</h1>"))
    handler = functools.partial(SiteHandler, directory=str(root))
    servers = {name: http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
               for name in ("shopping_admin", "gitlab", "reddit")}
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {name: f"http://127.0.0.1:{server.server_address[1]}"
           for name, server in servers.items()}
    for server in servers.values():
        server.shutdown()


@pytest.fixture(scope="module")
def webarena(sites, tmp_path_factory):
    env = make_env("webarena", sites=sites,
                   trace_dir=str(tmp_path_factory.mktemp("traces")))
    yield env
    env.close()


def task(env, task_id: int) -> Task:
    return next(t for t in env.benchmark_tasks() if t.env_args["task_id"] == task_id)


def respond(task_type: str, data=None) -> str:
    body = {"task_type": task_type, "status": "SUCCESS", "retrieved_data": data,
            "error_details": None}
    return f"send_msg_to_user({json.dumps(body, ensure_ascii=False)!r})"


def test_webarena_retrieve_task_scored_by_webarena_verified(webarena):
    observation = webarena.reset(task(webarena, 0))
    assert "Quest Lumaflex™ Band" in observation and "heading 'Bestsellers 2022'" in observation
    assert webarena.step(respond("RETRIEVE", ["Quest Lumaflex™ Band"])) == (
        "Response recorded; the episode is over.", True)
    assert webarena.evaluate() == 1.0
    webarena.reset(task(webarena, 0))
    webarena.step(respond("RETRIEVE", ["Sprite Stasis Ball"]))
    assert webarena.evaluate() == 0.0
    webarena.reset(task(webarena, 0))
    webarena.step("send_msg_to_user('Quest Lumaflex Band')")  # not the response format
    assert webarena.evaluate() == 0.0


def test_webarena_navigate_task_scored_from_the_network_trace(webarena):
    observation = webarena.reset(task(webarena, 44))  # "Open my todos page"
    link = observation.split("] link 'To-Do List'")[0].rsplit("[", 1)[1]
    observation, done = webarena.step(f"click('{link}')")
    assert not done and "/dashboard/todos" in observation
    webarena.step(respond("NAVIGATE"))
    assert webarena.evaluate() == 1.0
    webarena.reset(task(webarena, 44))  # claims success without going there
    webarena.step(respond("NAVIGATE"))
    assert webarena.evaluate() == 0.0


def test_webarena_mutate_task_scored_from_the_posted_form(webarena):
    for bio, score in [("I am a robot", 1.0), ("I am a human", 0.0)]:
        observation = webarena.reset(task(webarena, 399))  # 'Change my bio to "I am a robot"'
        box = observation.split("] textbox 'Biography'")[0].rsplit("[", 1)[1]
        save = observation.split("] button 'Save'")[0].rsplit("[", 1)[1]
        assert webarena.step(f"fill('{box}', '{bio}')")[1] is False
        assert webarena.step(f"click('{save}')")[1] is False
        webarena.step(respond("MUTATE"))
        assert webarena.evaluate() == score, bio


def test_webarena_refuses_other_websites_and_bad_calls(webarena, sites):
    webarena.reset(task(webarena, 0))
    observation, done = webarena.step("goto('http://example.com/')")
    assert not done and "not one of this task's websites" in observation
    observation, done = webarena.step(f"goto('{sites['gitlab']}/dashboard/todos')")
    assert not done and "To-Do" in observation
    assert "not available" in webarena.step("upload_file('3', '/etc/passwd')")[0]
    assert "one quoted string" in webarena.step("send_msg_to_user(42)")[0]


def test_webarena_site_configuration_is_checked():
    with pytest.raises(EnvError, match="share one URL"):
        make_env("webarena", sites={"gitlab": "http://h:1", "reddit": "http://h:1/"})
    with pytest.raises(EnvError, match="unknown WebArena sites"):
        make_env("webarena", sites={"gitlb": "http://h:1"})


def test_webarena_without_sites_fails_fast_naming_them():
    env = make_env("webarena", sites={"shopping": "http://127.0.0.1:9"})
    start = time.monotonic()
    with pytest.raises(EnvError) as error:
        env.reset(next(t for t in env.benchmark_tasks() if t.env_args["sites"] == ["shopping"]))
    assert time.monotonic() - start < 15
    message = str(error.value)
    assert "WebArena needs infrastructure" in message and "http://127.0.0.1:9" in message
    assert "README" in message


# ---- SWE-bench --------------------------------------------------------------------------------
@pytest.fixture
def checkout(box_root):
    """A repository at /testbed in a bubblewrap sandbox, standing in for the task container."""
    (box_root / "testbed" / "pkg").mkdir(parents=True)
    (box_root / "testbed" / "pkg" / "mod.py").write_text("def f(n):\n    return n + 1\n")
    sandbox = Sandbox(box_root, SandboxLimits(command_timeout_s=20))
    sandbox.start()
    yield box_root, sandbox
    sandbox.close()


def run(sandbox, action: str, cwd: str) -> tuple[str, int | None, str]:
    """``action`` as the adapter runs it in a container: a fresh ``bash -c`` per command."""
    command = to_command(action, cwd)
    result = sandbox.run(f"bash -c {shlex.quote(command.script)}")
    return split_output(result.output, command.marker, cwd)


def test_swebench_actions_run_as_container_commands(checkout):
    root, sandbox = checkout
    output, code, cwd = run(sandbox, "cd pkg && ls", "/testbed")
    assert (output, code, cwd) == ("mod.py", 0, "/testbed/pkg")
    output, code, _ = run(sandbox, format_edit("mod.py", "    return n + 1", "    return n + 2"),
                          cwd)
    assert (output, code) == ("Edited mod.py (1 block replaced).", 0)
    assert (root / "testbed/pkg/mod.py").read_text() == "def f(n):\n    return n + 2\n"
    output, code, _ = run(sandbox, format_edit("mod.py", "    return n + 9", "x"), cwd)
    assert code == 1 and "SEARCH text was not found in mod.py" in output
    output, code, _ = run(sandbox, "python3 -c 'import mod; print(mod.f(1))'; exit 3", cwd)
    assert (output, code) == ("3", 3)
    assert to_command("submit", cwd) is None


def test_swebench_without_docker_fails_fast():
    if docker_problem() is None:
        pytest.skip("a Docker daemon is reachable here")
    env = make_env("swebench")
    start = time.monotonic()
    with pytest.raises(EnvError, match="a Docker daemon"):
        env.reset(Task(id="x", env="swebench", instruction="fix it", origin="benchmark",
                       env_args={"instance_id": "astropy__astropy-12907"}))
    assert time.monotonic() - start < 15


def test_swebench_missing_dataset_file_is_explained(tmp_path):
    env = make_env("swebench", dataset=str(tmp_path / "lite.jsonl"))
    with pytest.raises(EnvError, match="could not load SWE-bench dataset"):
        env.benchmark_tasks()


def test_eval_without_infrastructure_exits_with_one_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lbi.cli", "eval", "--config",
         str(REPO / "configs/eval/osworld.yaml"), "--set", f"output_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert "OSWorld needs infrastructure" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# ---- OSWorld / Spider2-V ----------------------------------------------------------------------
def test_desktop_actions_are_checked_before_the_vm_sees_them():
    assert translate(" done ") == "DONE"
    assert translate("```python\npyautogui.click(10, 20)\n```") == "pyautogui.click(10, 20)"
    with pytest.raises(ValueError, match="not valid Python"):
        translate("click the OK button")


def test_accessibility_tree_becomes_osworld_table():
    st, cp = ("https://accessibility.ubuntu.example.org/ns/state",
              "https://accessibility.ubuntu.example.org/ns/component")
    xml = (f'<desktop-frame xmlns:st="{st}" xmlns:cp="{cp}">'
           '<push-button name="Save" st:showing="true" st:visible="true" '
           'cp:screencoord="(10, 20)" cp:size="(80, 30)"/>'
           '<push-button name="Hidden" st:showing="false" st:visible="true"/>'
           '<label name="" st:showing="true" st:visible="true" cp:size="(0, 0)"/>'
           '<paragraph st:showing="true" st:visible="true" cp:size="(200, 20)">Total: 42'
           '</paragraph></desktop-frame>')
    rows = linearize(xml).splitlines()
    assert rows[0].startswith("tag\tname\ttext")
    assert rows[1] == 'push-button\tSave\t""\t\t\t(10, 20)\t(80, 30)'
    assert rows[2].startswith('paragraph\t\t"Total: 42"') and len(rows) == 3
    assert "could not be read" in linearize("<unclosed")


@pytest.mark.parametrize("name,title", [("osworld", "OSWorld"), ("spider2v", "Spider2-V")])
def test_desktop_benchmarks_name_what_is_missing(name, title, tmp_path):
    env = make_env(name, provider_name="vmware", path_to_vm=str(tmp_path / "vm.vmx"))
    with pytest.raises(EnvError) as error:
        env.check_infrastructure()
    message = str(error.value)
    assert f"{title} needs infrastructure" in message
    assert "desktop_env" in message and "tasks_dir" in message and "vmrun" in message
    assert "vm.vmx" in message
    assert ENVIRONMENTS[name].missing()  # `lbi envs` shows it as not ready


def test_desktop_task_listing_follows_the_benchmark_layout(tmp_path):
    """The evaluation_examples layout (test_all.json → examples/<domain>/<id>.json); the record
    holds only the fields the adapter reads."""
    (tmp_path / "examples" / "gimp").mkdir(parents=True)
    (tmp_path / "test_all.json").write_text(json.dumps({"gimp": ["a1"]}))
    (tmp_path / "examples" / "gimp" / "a1.json").write_text(json.dumps(
        {"id": "a1", "instruction": "Make the background transparent.", "config": [],
         "evaluator": {"func": "check_structure_sim"}}))
    env = make_env("osworld", tasks_dir=str(tmp_path))
    (listed,) = env.benchmark_tasks()
    assert (listed.id, listed.instruction) == ("gimp/a1", "Make the background transparent.")
    generated = listed.model_copy(update={"origin": "doc", "instruction": "Crop it."})
    assert env.task_config(generated)["instruction"] == "Crop it."
    assert env.task_config(listed)["evaluator"] == {"func": "check_structure_sim"}


# ---- documentation corpora --------------------------------------------------------------------
def test_benchmark_docs_come_from_a_folder_or_urls(sites, tmp_path):
    site = sites["gitlab"]
    long_text = "GitLab to-do lists collect what needs your attention. " * 10
    (tmp_path / "todos.md").write_text(f"# To-Do List\n\n{long_text}")
    (tmp_path / "stub.html").write_text("<html><title>x</title>moved</html>")  # too short: skipped
    from_folder = list(make_env("webarena", docs_dir=str(tmp_path)).docs())
    assert [d.title for d in from_folder] == ["todos"] and long_text.strip() in from_folder[0].text
    (from_url,) = make_env("webarena", doc_urls=[f"{site}/help.html"]).docs()
    assert (from_url.title, from_url.source) == ("Help", f"{site}/help.html")
    assert "A to-do is added when an issue" in from_url.text
    with pytest.raises(EnvError, match="could not fetch documentation page"):
        list(make_env("webarena", doc_urls=[f"{site}/missing.html"]).docs())
    with pytest.raises(EnvError, match="no documentation corpus configured"):
        list(make_env("osworld").docs())


def test_lbi_tasks_lists_webarena_records():
    result = subprocess.run([sys.executable, "-m", "lbi.cli", "tasks", "--env", "webarena"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "webarena-0" in result.stdout and "webarena-811" in result.stdout


def test_desktop_episode_drives_the_harness_it_is_given(tmp_path, monkeypatch):
    """Control flow only: a stand-in ``desktop_env`` with the older signature of Spider2-V's
    fork (no provider arguments) receives the task config, the checked actions, and scores."""
    harness = tmp_path / "Spider2-V" / "desktop_env"
    harness.mkdir(parents=True)
    (harness / "__init__.py").write_text("")
    (harness / "desktop_env.py").write_text(
        "class DesktopEnv:\n"
        "    def __init__(self, path_to_vm=None, snapshot_name='init_state',\n"
        "                 action_space='computer_13', screen_size=(1920, 1080), headless=False,\n"
        "                 require_a11y_tree=True):\n"
        "        self.actions, self.settings = [], dict(action_space=action_space,\n"
        "                                              headless=headless)\n"
        "    def reset(self, task_config):\n"
        "        self.config = task_config\n"
        "        return {'accessibility_tree': '<root/>'}\n"
        "    def step(self, action, pause):\n"
        "        self.actions.append(action)\n"
        "        return {'accessibility_tree': '<root/>'}, 0, action == 'DONE', {}\n"
        "    def evaluate(self):\n"
        "        return 1.0 if self.actions[-1] == 'DONE' else 0.0\n"
        "    def close(self):\n"
        "        pass\n")
    (tmp_path / "examples" / "dbt").mkdir(parents=True)
    (tmp_path / "test_all.json").write_text(json.dumps({"dbt": ["t1"]}))
    (tmp_path / "examples" / "dbt" / "t1.json").write_text(json.dumps(
        {"id": "t1", "instruction": "Run the dbt project.", "config": []}))
    for variable in ("AWS_REGION", "AWS_SUBNET_ID", "AWS_SECURITY_GROUP_ID"):
        monkeypatch.setenv(variable, "x")
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        env = make_env("spider2v", provider_name="aws", tasks_dir=str(tmp_path),
                       harness_path=str(harness.parent), sleep_after_action_s=0)
        (listed,) = env.benchmark_tasks()
        assert env.reset(listed).startswith("Accessibility tree:\ntag\tname")
        assert env.harness.settings == {"action_space": "pyautogui", "headless": True}
        assert env.harness.config["instruction"] == "Run the dbt project."
        assert "not valid Python" in env.step("open the terminal")[0]
        assert env.step("pyautogui.hotkey('ctrl', 'alt', 't')")[1] is False
        assert env.step("DONE")[1] is True
        assert env.harness.actions == ["pyautogui.hotkey('ctrl', 'alt', 't')", "DONE"]
        assert env.evaluate() == 1.0
        env.close()
    finally:
        for name in ("desktop_env.desktop_env", "desktop_env"):
            sys.modules.pop(name, None)
