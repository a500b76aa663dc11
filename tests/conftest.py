"""Shared fixtures: a tiny random model exported to a real bundle, run by real onnxruntime."""
import pytest
import torch

from train.model import ModelConfig, SceneModel

TINY = ModelConfig(channels=16, res_blocks=1, tz_hidden=16)


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


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    from export.to_onnx import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "tiny"
    manifest = export_bundle(tiny_checkpoint, out, "tiny")
    return out, manifest
