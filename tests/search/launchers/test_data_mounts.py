"""How each launcher hands a trial its data: a ``file://`` DATA_URL naming a host archive or a
folder of images is mounted read-only into a Docker trial (the volumes and environment the
docker launcher builds, checked here without Docker; tests/search/launchers/test_docker.py
runs them in the real engine), and a local trial reads the same URL as it is."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from search.launchers.base import TrialSpec
from search.launchers.docker import ARCHIVE_DIR, host_data, mounts
from search.launchers.local import LocalLauncher
from tests.archives import make_archive


def _spec(tmp_path: Path, data_url: str | None) -> TrialSpec:
    env = {"EPOCHS": "1"} if data_url is None else {"EPOCHS": "1", "DATA_URL": data_url}
    return TrialSpec("t", env, tmp_path / "out", tmp_path / "cache")


def _images(root: Path) -> Path:
    """A folder of class folders holding a few real PNGs (the learnable CIFAR-shaped ones)."""
    archive = make_archive(root.parent / f"{root.name}.tgz", "fastai", n_train=20, n_test=10)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(params=["folder", "archive"])
def host_data_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A host folder of images, or an archive, that a trial's DATA_URL names."""
    if request.param == "folder":
        return _images(tmp_path / "my images")  # a space: the URL must quote it
    return make_archive(tmp_path / "cifar10.tgz", "fastai", n_train=20, n_test=10)


def test_host_data_is_mounted_read_only_under_archive(tmp_path: Path, host_data_path) -> None:
    _, volumes = mounts(_spec(tmp_path, host_data_path.as_uri()))
    assert volumes[str(host_data_path)] == {
        "bind": f"{ARCHIVE_DIR}/{host_data_path.name}",
        "mode": "ro",
    }


def test_data_url_names_where_the_container_sees_the_data(tmp_path: Path, host_data_path) -> None:
    env, volumes = mounts(_spec(tmp_path, host_data_path.as_uri()))
    url = urlparse(env["DATA_URL"])
    assert url.scheme == "file"
    assert unquote(url.path) == volumes[str(host_data_path)]["bind"]


def test_cache_and_output_stay_writable(tmp_path: Path, host_data_path) -> None:
    env, volumes = mounts(_spec(tmp_path, host_data_path.as_uri()))
    assert volumes[str(tmp_path / "cache")] == {"bind": "/data", "mode": "rw"}
    assert volumes[str(tmp_path / "out")] == {"bind": "/output", "mode": "rw"}
    assert (env["DATA_DIR"], env["OUTPUT_DIR"]) == ("/data", "/output")


def test_a_relative_file_url_is_read_as_the_job_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # file://images/ is the folder images/ of the current directory, as for the job itself.
    _images(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    assert host_data("file://images/") == tmp_path / "images"


def test_a_link_is_mounted_as_the_folder_it_points_to(tmp_path: Path) -> None:
    # Docker binds the resolved folder: a link's own path would not exist in the container.
    target = _images(tmp_path / "photos-v3")
    (tmp_path / "current").symlink_to(target)
    env, volumes = mounts(_spec(tmp_path, (tmp_path / "current").as_uri()))
    assert volumes[str(target)] == {"bind": f"{ARCHIVE_DIR}/photos-v3", "mode": "ro"}
    assert env["DATA_URL"] == f"file://{ARCHIVE_DIR}/photos-v3"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cifar10.tgz",  # downloaded inside the container
        "file:///no/such/folder",  # the job says what is missing, with the URL the user gave
        None,  # the job's default
    ],
)
def test_other_data_urls_are_passed_as_they_are(tmp_path: Path, url: str | None) -> None:
    env, volumes = mounts(_spec(tmp_path, url))
    assert env.get("DATA_URL") == url
    assert set(volumes) == {str(tmp_path / "cache"), str(tmp_path / "out")}


def test_a_local_trial_reads_the_folder_url_as_it_is(tmp_path: Path) -> None:
    folder = _images(tmp_path / "my images")
    # The stand-in trial lists the class folders the URL leads to, as the job would find them.
    script = (
        "import os, pathlib, urllib.parse as u; url = os.environ['DATA_URL']; "
        "print(url); p = pathlib.Path(u.unquote(u.urlparse(url).path)); "
        "print(sorted(c.name for c in (p / 'cifar10' / 'train').iterdir()))"
    )
    run = LocalLauncher([sys.executable, "-c", script]).start(_spec(tmp_path, folder.as_uri()))
    lines = list(run.lines())
    assert run.wait() == 0
    assert lines[0] == folder.as_uri() + "\n"
    assert "'airplane'" in lines[1] and "'truck'" in lines[1]


@pytest.mark.parametrize(("gpu", "device"), [("3", "cuda"), (None, "cpu")])
def test_a_container_is_told_its_device_and_the_gpu_order(tmp_path: Path, gpu, device) -> None:
    spec = TrialSpec("t", {"DEVICE": "auto"}, tmp_path / "out", tmp_path / "cache", gpu=gpu)
    env, _ = mounts(spec)  # the GPU itself is the container's --gpus device=3
    assert (env["DEVICE"], env["CUDA_DEVICE_ORDER"]) == (device, "PCI_BUS_ID")
