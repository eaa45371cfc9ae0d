"""Folders of labelled pictures as data: formats, layouts, the split, statistics, the cache,
bad data and the data report (docs/images.md). Every picture is a CIFAR-shaped image of
tests/archives.py re-encoded in another format, size or layout."""

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from job.config import from_env
from job.data import load_dataset
from job.data.images import ImageError, decode
from job.errors import DataError
from tests.archives import LITTER, encode, make_images, picture_files, write_pictures

# Old-way digests of the fixture archives' arrays (train images, labels, test images, labels),
# computed with the job's decoder before folders of pictures were accepted: CIFAR-10 must not
# move. The second is TRAIN_LIMIT=50 at SEED=5 (train images and labels).
_CIFAR_ARRAYS = "60bf2a3e2d9abb22bc757bedfe29840ab83cbf41148d2e3fa2f18fe183d4b828"
_CIFAR_SUBSET = "b625ac8bf7a37be2d17fe5cb9b758dfb8fd739d79e6371add6432eea8de97b31"


def _load(tmp_path: Path, source: Path, **extra: str):
    env = {"DATA_URL": source.as_uri(), "DATA_DIR": str(tmp_path / "data"), **extra}
    return load_dataset(from_env(env))


def _digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("layout", ["fastai", "python"])
def test_cifar10_arrays_do_not_move(archives, tmp_path: Path, layout: str) -> None:
    data = _load(tmp_path, archives[layout])
    assert data.layout == layout and data.preprocess.mean == (0.4914, 0.4822, 0.4465)
    pixels = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    assert _digest(*pixels) == _CIFAR_ARRAYS


def test_cifar10_subsets_do_not_move(archives, tmp_path: Path) -> None:
    data = _load(tmp_path, archives["fastai"], TRAIN_LIMIT="50", SEED="5")
    assert _digest(data.train_images, data.train_labels) == _CIFAR_SUBSET


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
@pytest.mark.parametrize(("stored", "side"), [((48, 40), 32), ((20, 30), 24), ((32, 32), 32)])
def test_decode_squares_every_format(fmt: str, stored: tuple[int, int], side: int) -> None:
    image = make_images(1, seed=3)[0][0]
    pixels = decode(encode(image, fmt, stored), side)
    assert pixels.shape == (side, side, 3) and pixels.dtype == np.uint8
    if fmt in ("PNG", "BMP") and stored == (32, 32):
        assert np.array_equal(pixels, image)  # lossless at its own size: untouched


def test_decode_crops_the_centre_of_the_longer_side() -> None:
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = 255  # a white centre third between black sides
    pixels = decode(encode(image, "PNG"), 20)
    assert pixels.min() == 255


def test_decode_turns_a_picture_upright_by_its_exif_orientation() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20] = 255  # white left half: after a quarter turn clockwise, the top half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    pixels = decode(encode(image, "PNG", exif=exif.tobytes()), 20)
    assert pixels[:5].mean() > 200 and pixels[-5:].mean() < 50


def test_decode_reads_the_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    pixels = decode(buf.getvalue(), 16)
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


_PHOTO = encode(make_images(1, seed=4)[0][0], "JPEG", (64, 64))
_TRUNCATED = _PHOTO[: len(_PHOTO) // 2]


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"not a picture", "not a PNG, JPEG"),
        (_TRUNCATED, "not a readable image"),
    ],
    ids=["text", "truncated"],
)
def test_undecodable_bytes_raise_image_error(blob: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        decode(blob, 8)


def test_an_image_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="image bomb"):
        decode(encode(np.zeros((40, 40, 3), np.uint8), "PNG"), 8)


@pytest.mark.parametrize("container", ["folder", "zip", "tar", "tgz"])
@pytest.mark.parametrize("split", [True, False], ids=["split", "holdout"])
@pytest.mark.parametrize("top", ["photos/", ""], ids=["top-folder", "no-top-folder"])
def test_every_container_and_layout_reads_the_classes(
    tmp_path: Path, container: str, split: bool, top: str
) -> None:
    files = picture_files(split=split, top=top) | (LITTER if top else {})
    data = _load(tmp_path, write_pictures(tmp_path / "pics", files, container))
    assert data.classes == ("cat", "dog", "ship")
    assert (len(data.train_labels), len(data.test_labels)) == (24, 6)
    assert data.layout == ("split" if split else "holdout")
    assert data.train_images.shape[1:] == (3, 32, 32)
    assert data.report["ignored_files"] == (1 if top else 0)  # README.txt


@pytest.mark.parametrize("folder", ["val", "valid"])
def test_val_or_valid_is_the_test_split(tmp_path: Path, folder: str) -> None:
    files = {k.replace("/test/", f"/{folder}/"): v for k, v in picture_files(split=True).items()}
    data = _load(tmp_path, write_pictures(tmp_path / "pics", files, "zip"))
    assert len(data.test_labels) == 6 and data.layout == "split"


def test_the_holdout_does_not_move_with_seed_or_other_classes(tmp_path: Path) -> None:
    files = picture_files(split=False, per_class=20)
    one = _load(tmp_path / "a", write_pictures(tmp_path / "a" / "p", files, "folder"), SEED="1")
    more = files | picture_files(split=False, classes=("frog",), per_class=20)
    other = _load(tmp_path / "b", write_pictures(tmp_path / "b" / "p", more, "folder"), SEED="2")
    test_cats = [r for r in one.report["images"]["test"].items()]
    assert test_cats == [("cat", 4), ("dog", 4), ("ship", 4)]
    kept = other.test_labels != other.classes.index("frog")
    assert np.array_equal(one.test_images.numpy(), other.test_images.numpy()[kept.numpy()])


@pytest.mark.parametrize("fraction", ["0.1", "0.5"])
def test_test_fraction_holds_out_that_share_of_each_class(tmp_path: Path, fraction: str) -> None:
    files = picture_files(split=False, per_class=20)
    data = _load(tmp_path, write_pictures(tmp_path / "p", files, "tgz"), TEST_FRACTION=fraction)
    assert set(data.report["images"]["test"].values()) == {round(20 * float(fraction))}


@pytest.mark.parametrize("side", [24, 64])
def test_image_size_sets_the_side_and_keys_the_cache(tmp_path: Path, side: int) -> None:
    source = write_pictures(tmp_path / "p", picture_files(split=True), "zip")
    small, big = _load(tmp_path, source), _load(tmp_path, source, IMAGE_SIZE=str(side))
    assert big.train_images.shape[1:] == (3, side, side) and big.preprocess.size == side
    assert small.train_images.shape[1:] == (3, 32, 32)
    assert len(list((tmp_path / "data").glob("images-*.npz"))) == 2


def test_cifar10_at_another_size_keeps_its_constants(archives, tmp_path: Path) -> None:
    data = _load(tmp_path, archives["python"], IMAGE_SIZE="40")
    assert data.train_images.shape[1:] == (3, 40, 40)
    assert data.preprocess.std == (0.2023, 0.1994, 0.2010) and data.preprocess.size == 40


def test_statistics_come_from_the_training_split(tmp_path: Path) -> None:
    data = _load(tmp_path, write_pictures(tmp_path / "p", picture_files(split=True), "tar"))
    pixels = data.train_images.numpy().astype(np.float64) / 255
    assert data.preprocess.mean == pytest.approx(pixels.mean(axis=(0, 2, 3)), abs=1e-9)
    assert data.preprocess.std == pytest.approx(pixels.std(axis=(0, 2, 3)), abs=1e-9)


def test_streaming_returns_the_same_images(tmp_path: Path) -> None:
    source = write_pictures(tmp_path / "p", picture_files(split=True), "zip")
    copied, streamed = _load(tmp_path, source), _load(tmp_path, source, STREAM_DATA="1")
    assert (copied.streamed, streamed.streamed) == (False, True)
    assert np.array_equal(copied.train_images.numpy(), streamed.train_images.numpy())


def test_a_folders_sha256_is_sha256sum_of_its_manifest(tmp_path: Path) -> None:
    folder = write_pictures(tmp_path / "pics", picture_files(split=True) | LITTER, "folder")
    manifest = subprocess.run(
        "find . -type f -not -path '*/.*' -not -path '*/__MACOSX/*' | sed 's|^\\./||' "
        "| LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    assert _load(tmp_path, folder, DATA_SHA256=manifest).sha256 == manifest
    with pytest.raises(DataError, match=f"The folder at .* has sha256 {manifest}"):
        _load(tmp_path, folder, DATA_SHA256="0" * 64)


# --- bad data: one sentence, exit 3, nothing half-written ------------------------------------


def _without(files: dict[str, bytes], part: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if part not in k}


_HOLDOUT = picture_files(split=False)
_SPLIT = picture_files(split=True)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"a.jpg": _HOLDOUT["photos/cat/0.jpg"]}, "has no class folders"),
        (_without(_without(_HOLDOUT, "dog"), "ship"), r"has one class \('cat'\)"),
        (_without(_HOLDOUT, "dog/") | {"photos/dog/notes.txt": b"x"}, r"without images \('dog'"),
        (_without(_SPLIT, "test/ship"), r"different classes .*only in train/: 'ship'"),
        (_without(_SPLIT, "test/"), "has train/ but not test/, val/ or valid/"),
        (_HOLDOUT | {"photos/cat/bad.jpg": b"oops"}, r"1 of 31 images .* cannot be decoded"),
    ],
    ids=["no-classes", "one-class", "empty-class", "class-mismatch", "no-test", "undecodable"],
)
def test_bad_data_is_refused_with_one_sentence(tmp_path: Path, files, match: str) -> None:
    source = write_pictures(tmp_path / "p", files, "zip")
    with pytest.raises(DataError, match=match) as refused:
        _load(tmp_path, source)
    assert refused.value.exit_code == 3 and "\n" not in refused.value.message
    assert not list((tmp_path / "data").glob("images-*"))  # nothing half-written


def test_undecodable_images_are_named_and_counted(tmp_path: Path) -> None:
    bad = {f"photos/dog/bad{i}.png": b"x" * i for i in range(5)}
    with pytest.raises(DataError, match=r"5 of 35 images .*photos/dog/bad0.png: .*bad2.png: "):
        _load(tmp_path, write_pictures(tmp_path / "p", _HOLDOUT | bad, "tgz"))


def test_bad_images_skip_leaves_them_out_and_reports_them(tmp_path: Path) -> None:
    bad = {"photos/dog/bad.png": b"oops", "photos/cat/half.jpg": _HOLDOUT["photos/cat/1.jpg"][:99]}
    source = write_pictures(tmp_path / "p", _HOLDOUT | bad, "folder")
    data = _load(tmp_path, source, BAD_IMAGES="skip")
    assert len(data.train_labels) + len(data.test_labels) == 30
    assert data.report["skipped"]["count"] == 2
    assert {f["name"] for f in data.report["skipped"]["files"]} == set(bad)


def test_a_zip_name_leaving_the_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in _HOLDOUT.items():
            zf.writestr(name, data)
        zf.writestr("../evil.png", b"x")
    with pytest.raises(DataError, match=r"unsafe: refusing unsafe member '\.\./evil\.png'"):
        _load(tmp_path, path)


def test_the_report_counts_classes_sizes_modes_and_duplicates(tmp_path: Path) -> None:
    files = picture_files(split=True)
    files["photos/test/cat/copy.jpg"] = files["photos/train/cat/5.jpg"]  # a leaked test image
    files["photos/train/dog/grey.png"] = encode(np.full((30, 50, 3), 90, np.uint8)[..., 0], "PNG")
    report = _load(tmp_path, write_pictures(tmp_path / "p", files, "zip")).report
    assert report["images"]["train"] == {"cat": 8, "dog": 9, "ship": 8}
    assert report["images"]["test"] == {"cat": 3, "dog": 2, "ship": 2}
    assert report["sizes"] == {"48x40": 31, "50x30": 1} and report["modes"] == {"RGB": 31, "L": 1}
    assert report["duplicates"] == {
        "count": 1,
        "examples": [["photos/train/cat/5.jpg", "photos/test/cat/copy.jpg"]],
    }
