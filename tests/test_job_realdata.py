"""The job on the real CIFAR-10 archive (fast.ai layout), when this machine has it."""

import json

import pytest

from tests.conftest import job_env, run_job


@pytest.mark.realdata
def test_quarter_width_reaches_the_tutorial_pipelines_accuracy(real_cifar, tmp_path) -> None:
    # The tutorial's own pipeline reaches about 0.48 on this configuration (bench/).
    env = job_env(
        tmp_path,
        DATA_URL=real_cifar.as_uri(),
        MODEL_WIDTH=0.25,
        TRAIN_LIMIT=5000,
        TEST_LIMIT=2000,
        EPOCHS=3,
        BATCH_SIZE=400,
    )
    env.pop("OMP_NUM_THREADS")
    result = run_job(env, timeout=1200)
    assert result.code == 0, result.stderr
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_test"], metrics["data_layout"]) == (5000, 2000, "fastai")
    assert metrics["val_acc"] > 0.40


@pytest.mark.realdata
def test_the_exported_model_reaches_the_runs_val_acc_on_real_images(real_cifar, tmp_path) -> None:
    from job.config import from_env
    from job.contract import EXPORTED_MODEL
    from job.data import load_dataset
    from tests.job.fresh import fresh_accuracy

    env = job_env(
        tmp_path,
        DATA_URL=real_cifar.as_uri(),
        MODEL_WIDTH=0.25,
        TRAIN_LIMIT=2000,
        TEST_LIMIT=1000,
        EPOCHS=2,
        BATCH_SIZE=200,
        PRECISION="fp32",  # the exported model computes in fp32, as this evaluation then does
    )
    result = run_job(env, timeout=1200)
    assert result.code == 0, result.stderr
    data = load_dataset(from_env(env))  # the same variables: the run's own test images
    model = tmp_path / "output" / EXPORTED_MODEL
    accuracy = fresh_accuracy(tmp_path, model, data.test_images, data.test_labels)
    assert accuracy == result.of("done")[0]["val_acc"] > 0.2  # chance is 0.1


@pytest.mark.realdata
def test_real_cifar10_decodes_to_the_same_arrays_as_before(real_cifar, tmp_path) -> None:
    # The sha256 of train images, labels, test images, labels as the job decoded them before
    # folders of pictures were accepted (one thread, the archive's order).
    import hashlib

    from job.config import from_env
    from job.data import load_dataset

    data = load_dataset(from_env({"DATA_URL": real_cifar.as_uri(), "DATA_DIR": str(tmp_path)}))
    h = hashlib.sha256()
    for t in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        h.update(t.numpy().tobytes())
    assert h.hexdigest() == "e3d2ebd2e9abd8f0fbb8cc8ff1a5b742d6dd4a12ea25d4a1c57a4b81af726106"
    assert data.layout == "fastai" and data.preprocess.mean == (0.4914, 0.4822, 0.4465)
