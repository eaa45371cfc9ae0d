import http.server
import io
import os
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from job.config import from_env
from job.data import CIFAR_CLASSES, decode_archive, load_dataset
from job.digest import sha256_file
from job.errors import DataError
from tests.archives import make_images, png
from tests.tmpfs import leftovers, small_volume


def _cfg(tmp_path: Path, url: str, **extra: str):
    return from_env({"DATA_URL": url, "DATA_DIR": str(tmp_path / "data"), **extra})


@pytest.mark.parametrize("layout", ["fastai", "python"])
def test_both_layouts_decode_to_the_generated_images(archives, layout: str) -> None:
    arrays = decode_archive(archives[layout], "test")
    images, labels = make_images(400, seed=0)
    assert arrays["train_images"].shape == (400, 3, 32, 32)
    assert arrays["test_images"].shape == (200, 3, 32, 32)
    assert tuple(arrays["classes"]) == CIFAR_CLASSES
    assert str(arrays["layout"]) == layout
    # Same multiset of (image, label) pairs, whatever order the layout stores them in.
    want = sorted(
        (int(lab), img.transpose(2, 0, 1).tobytes())
        for img, lab in zip(images, labels, strict=True)
    )
    got = sorted(
        (int(lab), img.tobytes())
        for img, lab in zip(arrays["train_images"], arrays["train_labels"], strict=True)
    )
    assert got == want


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("member", "data"),
    [
        (_member("cifar10/../../evil.png"), b"x"),
        (_member("cifar10/train/../../../evil.png"), b"x"),
        (_member(".."), None),
        (_member("/tmp/evil.png"), b"x"),
        (_member("cifar10/train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), None),
        (_member("cifar10/train/cat/hard.png", tarfile.LNKTYPE, "/etc/passwd"), None),
        (_member("cifar10/train/cat/dev.png", tarfile.CHRTYPE), None),
        (_member("cifar10/train/cat/fifo.png", tarfile.FIFOTYPE), None),
    ],
    ids=["dotdot", "dotdot-deep", "parent", "absolute", "symlink", "hardlink", "device", "fifo"],
)
def test_hostile_member_is_refused(
    tmp_path: Path, member: tarfile.TarInfo, data: bytes | None
) -> None:
    archive = _tar(tmp_path / "evil.tgz", [(member, data)])
    with pytest.raises(DataError, match="unsafe: refusing"):
        decode_archive(archive, "file://evil.tgz")
    assert not (tmp_path.parent / "evil.png").exists()


def test_harmless_relative_names_are_read(tmp_path: Path) -> None:
    # "./" prefixes (tar -C dir .) and a ".." that stays inside are not escapes.
    names = [
        "./cifar10/train/cat/0.png",
        "cifar10/x/../train/dog/1.png",
        "./cifar10/test/cat/2.png",
        "cifar10/test/./dog/3.png",
    ]
    archive = _tar(
        tmp_path / "ok.tgz",
        [(_member(n), png(np.full((32, 32, 3), i, np.uint8))) for i, n in enumerate(names)],
    )
    arrays = decode_archive(archive, "file://ok.tgz")
    assert tuple(arrays["classes"]) == ("cat", "dog")
    assert [int(img[0, 0, 0]) for img in arrays["train_images"]] == [0, 1]
    assert list(arrays["test_labels"]) == [0, 1]


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))

    marker = ""


def test_crafted_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Boom.marker = str(marker)
    payload = pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2)
    members = [(_member(f"cifar-10-batches-py/data_batch_{i}"), payload) for i in range(1, 6)]
    members.append((_member("cifar-10-batches-py/test_batch"), payload))
    archive = _tar(tmp_path / "pickle.tgz", members)
    with pytest.raises(DataError, match="forbidden global"):
        decode_archive(archive, "file://pickle.tgz")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not an archive at all", "cannot be read"),
        ("unrecognised", "has class folders without images"),
        ("truncated", "cannot be read"),
    ],
)
def test_unusable_archive_is_a_data_error(archives, tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "bad.tgz"
    if content == "unrecognised":
        _tar(path, [(_member("notes/readme.txt"), b"hello")])
    elif content == "truncated":
        path.write_bytes(archives["fastai"].read_bytes()[:5000])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_dataset(_cfg(tmp_path, path.as_uri()))


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="names no readable file"):
        load_dataset(_cfg(tmp_path, (tmp_path / "nope.tgz").as_uri()))


def test_cache_is_reused_without_decoding(archives, tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path, archives["fastai"].as_uri())
    first = load_dataset(cfg)
    capsys.readouterr()
    second = load_dataset(cfg)
    assert "decoding" not in capsys.readouterr().err
    assert np.array_equal(first.train_images.numpy(), second.train_images.numpy())


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "delete-checksum"])
def test_damaged_cache_is_rebuilt(archives, tmp_path: Path, capsys, damage: str) -> None:
    cfg = _cfg(tmp_path, archives["python"].as_uri())
    first = load_dataset(cfg)
    (cache,) = (tmp_path / "data").glob("images-*.npz")
    if damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:1000])
    elif damage == "flip-byte":
        blob = bytearray(cache.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        cache.write_bytes(bytes(blob))
    else:
        cache.with_suffix(".sha256").unlink()
    capsys.readouterr()
    again = load_dataset(cfg)
    assert "decoding" in capsys.readouterr().err
    assert np.array_equal(first.train_images.numpy(), again.train_images.numpy())


def test_sha256_mismatch_names_both_digests(archives, tmp_path: Path) -> None:
    actual = sha256_file(archives["fastai"])
    with pytest.raises(DataError) as info:
        load_dataset(_cfg(tmp_path, archives["fastai"].as_uri(), DATA_SHA256="0" * 64))
    assert actual in info.value.message and "0" * 64 in info.value.message
    assert archives["fastai"].exists()  # a user's own file:// archive is never deleted


def test_matching_sha256_is_accepted(archives, tmp_path: Path) -> None:
    digest = sha256_file(archives["fastai"])
    data = load_dataset(_cfg(tmp_path, archives["fastai"].as_uri(), DATA_SHA256=digest))
    assert data.sha256 == digest


@pytest.mark.parametrize(("limit", "expected"), [(0, 400), (50, 50), (1000, 400)])
def test_train_limit_takes_a_fixed_seeded_subset(archives, tmp_path: Path, limit, expected) -> None:
    cfg = _cfg(tmp_path, archives["fastai"].as_uri(), TRAIN_LIMIT=str(limit), SEED="5")
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert len(a.train_labels) == expected
    assert np.array_equal(a.train_images.numpy(), b.train_images.numpy())


# --- over a real HTTP server ------------------------------------------------------------


def _handler(
    archive: Path, failures: int = 0, truncate: bool = False, status: int = 503, length: bool = True
):
    state = {"requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["requests"] += 1
            if state["requests"] <= failures:
                self.send_error(status)
                return
            body = archive.read_bytes()
            self.send_response(200)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:  # the size is unknown until the server closes the connection
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler, state


def _serve(http_server, handler) -> str:
    return http_server(Path("."), handler=lambda *a, directory=None, **k: handler(*a, **k))


def test_transient_http_errors_are_retried(archives, tmp_path: Path, http_server) -> None:
    handler, state = _handler(archives["fastai"], failures=2)
    url = _serve(http_server, handler) + "/cifar10.tgz"
    data = load_dataset(_cfg(tmp_path, url))
    assert state["requests"] == 3 and len(data.train_labels) == 400
    assert not list((tmp_path / "data" / "downloads").glob(".*part"))


def test_truncated_body_fails_after_retries(archives, tmp_path: Path, http_server) -> None:
    handler, state = _handler(archives["fastai"], truncate=True)
    url = _serve(http_server, handler) + "/cifar10.tgz"
    with pytest.raises(DataError, match="truncated"):
        load_dataset(_cfg(tmp_path, url))
    assert state["requests"] == 4
    assert not list((tmp_path / "data" / "downloads").iterdir())  # nothing half-written kept


def test_not_found_fails_at_once(archives, tmp_path: Path, http_server) -> None:
    handler, state = _handler(archives["fastai"], failures=99, status=404)
    url = _serve(http_server, handler) + "/cifar10.tgz"
    with pytest.raises(DataError, match=f"Could not download {url}: HTTP 404"):
        load_dataset(_cfg(tmp_path, url))
    assert state["requests"] == 1


def test_unreachable_server_fails_within_bounded_time(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/cifar10.tgz"  # the discard port: nothing listens there
    with pytest.raises(DataError, match=f"Could not download {url} after 4 attempts"):
        load_dataset(_cfg(tmp_path, url))


def test_download_is_cached_and_sha_mismatch_removes_it(
    archives, tmp_path: Path, http_server
) -> None:
    handler, state = _handler(archives["python"])
    url = _serve(http_server, handler) + "/cifar-10-python.tar.gz"
    load_dataset(_cfg(tmp_path, url))
    load_dataset(_cfg(tmp_path, url))
    assert state["requests"] == 1
    with pytest.raises(DataError, match="the download was removed"):
        load_dataset(_cfg(tmp_path, url, DATA_SHA256="f" * 64))
    assert not list((tmp_path / "data" / "downloads").iterdir())


# --- a full DATA_DIR: exit 3 naming the folder and the sizes, nothing half-written -----------


def test_an_archive_larger_than_the_free_space_is_refused_before_downloading(
    archives, tmp_path: Path, http_server
) -> None:
    handler, state = _handler(archives["python"])  # 1.9 MiB, announced by Content-Length
    url = _serve(http_server, handler) + "/cifar-10-python.tar.gz"
    with small_volume(tmp_path / "data", 1 << 20) as data_dir:
        with pytest.raises(DataError) as refused:
            load_dataset(_cfg(tmp_path, url))
        assert leftovers(data_dir) == []
    message = refused.value.message
    # About 1 MiB: the digest record (.verified.json) may take a block of it.
    free = re.search(r"has ([\d.]+ [KM]iB) free", message)
    assert free is not None and free.group(1) in ("1.0 MiB", "1020.0 KiB", "1016.0 KiB")
    assert message.startswith(f"DATA_DIR={str(data_dir)!r} has ")
    assert f"the archive from {url} needs 1.9 MiB" in message
    assert state["requests"] == 1  # a full volume is never retried


def test_a_volume_filling_up_during_the_download_fails_at_once(
    archives, tmp_path: Path, http_server
) -> None:
    handler, state = _handler(archives["python"], length=False)
    url = _serve(http_server, handler) + "/cifar-10-python.tar.gz"
    with small_volume(tmp_path / "data", 1 << 20) as data_dir:
        with pytest.raises(DataError) as refused:
            load_dataset(_cfg(tmp_path, url))
        assert leftovers(data_dir) == []
    message = refused.value.message
    assert f"DATA_DIR={str(data_dir)!r} ran out of space while downloading" in message
    assert "free with the partial download removed" in message
    assert state["requests"] == 1


def test_a_cache_larger_than_the_free_space_is_refused_before_writing(
    archives, tmp_path: Path
) -> None:
    with small_volume(tmp_path / "data", 1 << 20) as data_dir:
        with pytest.raises(DataError) as refused:
            load_dataset(_cfg(tmp_path, archives["python"].as_uri()))
        assert not list(data_dir.glob("images-*")) and leftovers(data_dir) == []
    message = refused.value.message
    # About 1 MiB: the digest record (.verified.json) may take a block of it.
    free = re.search(r"has ([\d.]+ [KM]iB) free", message)
    assert free is not None and free.group(1) in ("1.0 MiB", "1020.0 KiB", "1016.0 KiB")
    assert message.startswith(f"DATA_DIR={str(data_dir)!r} has ")
    assert "the decoded cache images-" in message and "needs 1.8 MiB" in message


def test_a_volume_out_of_files_fails_the_cache_with_nothing_half_written(
    archives, tmp_path: Path
) -> None:
    # Room for bytes but not for files: the volume's root and the lock use both inodes, so
    # the cache cannot be created (ENOSPC, as a full volume).
    with small_volume(tmp_path / "data", 16 << 20, inodes=2) as data_dir:
        with pytest.raises(DataError) as refused:
            load_dataset(_cfg(tmp_path, archives["python"].as_uri()))
        assert not list(data_dir.glob("images-*")) and leftovers(data_dir) == []
    message = refused.value.message
    assert f"DATA_DIR={str(data_dir)!r} ran out of space while writing the decoded cache" in message
