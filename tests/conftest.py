"""Shared fixtures: a tiny random model exported to a real bundle, run by real onnxruntime; the
bundled mnist and sprites models, loaded once (a Renderer renders from many threads); and the
`data` marker: a test marked @pytest.mark.data("mnist") is skipped when train.data_dir finds
no MNIST, or fails when EQSDK_REQUIRE_DATA=1 (CI, which must not skip them silently)."""
import os

import pytest
import torch

from train.data_dir import DATASETS, ENV, DataNotFoundError, find_data
from train.model import ModelConfig, SceneModel

TINY = ModelConfig(channels=16, res_blocks=1, tz_hidden=16)


def pytest_runtest_setup(item):
    for name in (n for mark in item.iter_markers("data") for n in mark.args):
        try:
            find_data(name)
        except DataNotFoundError as e:
            if os.environ.get("EQSDK_REQUIRE_DATA") == "1":
                pytest.fail(f"EQSDK_REQUIRE_DATA=1 and a data test cannot run: {e}", pytrace=False)
            pytest.skip(f"needs the {name} data set: put {DATASETS[name][1]} in DIR/{name}/ and set "
                        f"{ENV}=DIR")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint of a tiny random model whose T^Z does move (not the identity)."""
    torch.manual_seed(0)
    model = SceneModel(TINY)
    torch.nn.init.normal_(model.t_z.head[-1].weight, std=0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"model": model.state_dict(), "model_config": TINY.to_dict(), "step": 0,
                "samples": 0, "elapsed": 0.0, "train_config": {}, "command": "tests"}, path)
    return path


def tiny_reader(model_cfg: ModelConfig, manifest, path):
    """A checkpoint of a tiny random motion reader of `manifest`'s bundle whose motion is not the
    identity."""
    from train.distill import DistillConfig, reader_checkpoint
    from train.model import MotionReader, ReaderConfig

    torch.manual_seed(2)
    reader = MotionReader(model_cfg, ReaderConfig(width=8, keypoints=4, hidden=16))
    torch.nn.init.normal_(reader.head[-1].weight, std=0.5)
    state = {"step": 0, "samples": 0, "elapsed": 0.0}
    torch.save(reader_checkpoint(reader, manifest, DistillConfig(), state, {}), path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    """The tiny model's bundle, with a tiny motion reader."""
    from eqsdk.manifest import read_manifest
    from export.add_reader import add_reader
    from export.to_onnx import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    manifest = export_bundle(tiny_checkpoint, out, "tiny")
    add_reader(out, tiny_reader(TINY, manifest, out.parent / "reader.pt"))
    return out, read_manifest(out)


@pytest.fixture(scope="session")
def mnist():
    import eqsdk

    return eqsdk.load("mnist")


@pytest.fixture(scope="session")
def sprites():
    import eqsdk

    return eqsdk.load("sprites")
