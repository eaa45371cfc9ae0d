"""Every environment variable and command line the manifests (and the trial Jobs the
kubernetes launcher builds) set means something to the program that gets it.

A container running the job gets only the job's variables (`python -m job --variables`); one
running `python -m search <command>` gets only variables that command reads (its options'
envvar); anywhere, a variable may also just feed another one, or the command line, through
Kubernetes' $(NAME) expansion. The search containers' command lines parse with the real CLI.
"""

from __future__ import annotations

import json
import re

import pytest

from search.gpus import DEVICE_ORDER
from tests.conftest import run_job
from tests.k8s.conftest import (
    RESOURCE_FILES,
    containers,
    is_project_image,
    load_file,
    runs_the_job,
    trial_jobs,
)

DOCS = [doc for name in RESOURCE_FILES for doc in load_file(name)] + trial_jobs()
PROJECT = [c for c in containers(DOCS) if is_project_image(c[1]["image"])]


@pytest.fixture(scope="module")
def job_variables() -> set[str]:
    result = run_job(None, "--variables", timeout=120, strict=False)
    assert result.code == 0, result.stderr
    return set(json.loads(result.stdout))


REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _referenced(container: dict) -> set[str]:
    """Names used as $(NAME) in the command, args or env values of the container."""
    texts = [*container.get("command", []), *container.get("args", [])]
    texts += [e.get("value", "") for e in container.get("env", [])]
    return {name for text in texts for name in REF.findall(text)}


def _search_command(container: dict) -> str | None:
    """The `python -m search` subcommand the container runs, if it runs one."""
    if container.get("command") == ["python", "-m", "search"]:
        return container["args"][0]
    return None


def _search_envvars(command: str) -> set[str]:
    from search.__main__ import cli

    params = [*cli.params, *cli.commands[command].params]
    names: set[str] = set()
    for param in params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def _expanded(container: dict) -> list[str]:
    """The container's args with $(NAME) replaced by a plausible value."""
    return [REF.sub("resnet-job", arg) for arg in container["args"]]


def test_job_variables_are_listed(job_variables: set[str]) -> None:
    assert {"EPOCHS", "DATA_DIR", "OUTPUT_DIR", "PROMOTE_DIR"} <= job_variables


@pytest.mark.parametrize(("name", "container", "spec"), PROJECT, ids=[c[0] for c in PROJECT])
def test_every_variable_set_is_used(
    name: str, container: dict, spec: dict, job_variables: set[str]
) -> None:
    used = _referenced(container)
    if runs_the_job(container):
        # CUDA_DEVICE_ORDER is read by the CUDA runtime inside the job, not by the job.
        allowed = job_variables | set(DEVICE_ORDER) | used
    elif (command := _search_command(container)) is not None:
        allowed = _search_envvars(command) | used
    else:
        allowed = used
    unknown = [e["name"] for e in container.get("env", []) if e["name"] not in allowed]
    assert not unknown, f"{name} sets variables nothing reads: {unknown}"


@pytest.mark.parametrize(("name", "container", "spec"), PROJECT, ids=[c[0] for c in PROJECT])
def test_every_reference_is_defined_before_use(name: str, container: dict, spec: dict) -> None:
    # Kubernetes expands $(NAME) only from variables defined earlier in the list; otherwise the
    # literal text "$(NAME)" reaches the program.
    defined: set[str] = set()
    for env in container.get("env", []):
        missing = set(REF.findall(env.get("value", ""))) - defined
        assert not missing, f"{env['name']} uses {missing} before they are defined"
        defined.add(env["name"])
    args = [*container.get("command", []), *container.get("args", [])]
    missing = {n for text in args for n in REF.findall(text)} - defined
    assert not missing, f"the command line uses undefined {missing}"


SEARCH = [c for c in PROJECT if _search_command(c[1]) is not None]


@pytest.mark.parametrize(("name", "container", "spec"), SEARCH, ids=[c[0] for c in SEARCH])
def test_search_command_line_parses(name: str, container: dict, spec: dict) -> None:
    from search.__main__ import cli

    args = _expanded(container)
    command = cli.commands[args[0]]
    # Parsing only (types, choices, unknown options); nothing runs.
    command.make_context(args[0], args[1:], parent=cli.make_context("search", [args[0]]))


def test_search_driver_builds_trials_from_the_packaged_job_yaml() -> None:
    # No --job-template: the launcher's default template is k8s/job.yaml as the image ships it
    # (tests/k8s/test_package_data.py), so nothing else has to reach the driver's pod.
    (job,) = load_file("search-job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = dict(a.split("=", 1) for a in container["args"][1:] if "=" in a)
    assert args["--launcher"] == "kubernetes"
    assert "--job-template" not in args
    assert args["--image"] == container["image"]
