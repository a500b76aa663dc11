"""Training checkpoints: weights, optimiser state and configs as plain data (dicts, numbers,
strings, tensors), read back with torch.load(weights_only=True), so that loading a checkpoint
someone shared cannot run code."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from eqsdk.errors import InputError
from eqsdk.images import replacing
from train.model import ModelConfig, SceneModel


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable, or holds more than weights and plain data."""


def save_checkpoint(path: Path, checkpoint: dict) -> None:
    """Write atomically: a run killed while saving leaves the previous checkpoint whole."""
    with replacing(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's dict; objects other than tensors and plain data are refused, not built."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        code = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if code:
            raise CheckpointError(f"{path}: refused, it holds objects other than tensors and plain data "
                                  f"(it would call {code[1]}); expected a checkpoint written by "
                                  f"train.train") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (expected one written by "
                              f"train.train)") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from None


def load_checkpoint(path: Path) -> tuple[SceneModel, dict]:
    """The model of a training checkpoint (rebuilt from the config saved in it), in eval mode."""
    ckpt = read_checkpoint(path)
    try:
        model = SceneModel(ModelConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a checkpoint of train.train ({e})") from None
    return model.eval(), ckpt
