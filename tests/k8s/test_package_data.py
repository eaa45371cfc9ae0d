"""k8s/job.yaml is the one trial template: the package ships that file (as
``search.manifests/job.yaml``) in the editable install and in the wheel the image installs,
and the launcher's default template is that file, parsed."""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from search.launchers.k8s_manifest import TEMPLATE_FILE, TEMPLATE_PACKAGE, default_template
from tests.conftest import REPO
from tests.k8s.conftest import K8S

# What the Dockerfile copies into /src before `pip install --no-deps /src`.
IMAGE_SOURCES = ("pyproject.toml", "README.md", "job", "search", "k8s/__init__.py", "k8s/job.yaml")


def test_installed_template_is_k8s_job_yaml() -> None:
    packaged = importlib.resources.files(TEMPLATE_PACKAGE) / TEMPLATE_FILE
    assert packaged.read_text() == (K8S / "job.yaml").read_text()


def test_default_template_is_k8s_job_yaml_parsed() -> None:
    assert default_template() == yaml.safe_load((K8S / "job.yaml").read_text())


def test_default_template_is_a_fresh_copy_each_time() -> None:
    first = default_template()
    first["spec"]["template"]["spec"]["containers"].clear()
    assert default_template()["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from the files the image build copies, as the Dockerfile builds it."""
    src = tmp_path_factory.mktemp("src")
    for name in IMAGE_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = src.parent / "wheel"
    # No build isolation: the venv's setuptools builds it, so no package index is needed.
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    build = subprocess.run(
        [*pip, "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_k8s_job_yaml_as_the_template(wheel: zipfile.ZipFile) -> None:
    shipped = wheel.read(f"{TEMPLATE_PACKAGE.replace('.', '/')}/{TEMPLATE_FILE}")
    assert shipped == (K8S / "job.yaml").read_bytes()


def test_wheel_ships_no_other_manifest(wheel: zipfile.ZipFile) -> None:
    folder = TEMPLATE_PACKAGE.replace(".", "/") + "/"
    names = {Path(n).name for n in wheel.namelist() if n.startswith(folder)}
    assert names == {"__init__.py", TEMPLATE_FILE}


@pytest.mark.parametrize("package", ["job", "search"])
def test_wheel_ships_every_module(wheel: zipfile.ZipFile, package: str) -> None:
    # pyproject.toml lists the packages (search.manifests lives outside search/): a new
    # subpackage missing from that list would be missing from the image.
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / package).rglob("*.py")}
    assert modules <= set(wheel.namelist())
