"""Open LPC sprites: the whole layer set, the paper renderer's bytes, seeded splits, and the two test
splits' promises (combinations and layers training never sees)."""
import json

import numpy as np
import pytest
from PIL import Image

from train import lpc
from train import lpc_open as lo
from train.checkpoint import read_checkpoint
from train.data_dir import find_data
from train.datasets import pair_source
from train.train import main as train_main

pytestmark = pytest.mark.data("lpc")

N_TRAIN = 4000  # train characters checked against the split rules


@pytest.fixture(scope="module")
def train_characters():
    return lo.OpenCharacters("train", size=N_TRAIN).characters()


def character(**options) -> lo.Character:
    return tuple(options.get(n, lo.NONE) for n in lo.ATTRIBUTE_NAMES)


def paper_id(**options) -> int:
    for k, c in enumerate(lpc.all_characters()):
        if all(lpc.OPTION_NAMES[n][c[lpc.ATTRIBUTE_NAMES.index(n)]] == v for n, v in options.items()):
            return k
    raise KeyError(options)


def test_every_sheet_of_the_data_is_an_option_of_the_sexes_it_fits():
    root = find_data("lpc")
    used = {l.path.format(sex=sex) for options in lo.OPEN_ATTRIBUTES.values() for o in options
            for sex in o.sexes for l in o.layers}
    sheets = {str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.png")}
    # the hat cut-out of the shield only fits with hats, which the layer set does not hold
    assert used == sheets - {"shield/male_shield_cutoutforhat"}
    for options in lo.OPEN_ATTRIBUTES.values():
        for o in options:
            for l in o.layers:
                assert all(not l.path.startswith(f"{other}_") for other in lo.BOTH)
                assert "{sex}" in l.path or "either_" in l.path, l.path


@pytest.mark.parametrize("paper, open_", [
    (dict(sex="male", body="light", arms="plate", hair="ponytail_blonde", armour="leather", greaves="pants",
          weapon="longsword"),
     dict(sex="male", body="light", hair="ponytail_blonde", shirt="white_longsleeve", chest="leather",
          legs="teal_pants", arms="plate", gloves="metal", feet="brown_shoes", weapon="longsword")),
    (dict(sex="female", body="dark", arms="gold", hair="messy2_raven", armour="chain", greaves="metal",
          weapon="bow"),
     dict(sex="female", body="dark", hair="messy2_raven", chainmail="chainmail", tabard="tabard",
          legs="metal_greaves", arms="gold", gloves="golden", feet="metal_boots", quiver="quiver", weapon="bow")),
])
def test_a_paper_character_renders_to_the_paper_renderers_bytes(paper, open_):
    expected = lpc.render_character(lpc.all_characters()[paper_id(**paper)])
    got = lo.render_character(character(**open_))
    assert got.dtype == np.uint8 and got.shape == (lpc.N_FRAMES, 64, 64, 4)
    np.testing.assert_array_equal(got, expected)


def test_a_batch_renders_each_frame_as_its_character_alone():
    chars = lo.OpenCharacters("test").characters()[:6]
    frames = np.array([5, 40, 100, 120, 140, 171])
    batch = lo.render_frames(chars, frames)
    for c, f, got in zip(chars, frames, batch):
        np.testing.assert_array_equal(got, lo.render_character(c)[f])


def test_large_spear_is_drawn_in_thrust_only():
    c = character(sex="female", body="tanned", weapon="spear_large")
    alone = lo.render_character(c)
    body = lo.render_character(character(sex="female", body="tanned"))
    thrust = lpc.oversize_frames("thrust")
    differs = (alone != body).any(axis=(1, 2, 3))
    assert differs[thrust].any() and not np.delete(differs, np.arange(thrust.start, thrust.stop)).any()


@pytest.mark.parametrize("split", lo.SPLITS)
def test_same_seed_same_characters_and_pixels(split):
    a, b = lo.OpenSprites.load(split, 4), lo.OpenSprites.load(split, 4)
    assert [a.characters[k] for k in range(20)] == [b.characters[k] for k in range(20)]
    pa = a.sample_pairs(16, np.random.default_rng(3))
    pb = b.sample_pairs(16, np.random.default_rng(3))
    assert pa.x1.numpy().tobytes() == pb.x1.numpy().tobytes() and pa.x2.equal(pb.x2)
    other = lo.OpenCharacters(split, seed=1)
    assert [other[k] for k in range(20)] != [a.characters[k] for k in range(20)]


def test_characters_are_unique_within_and_across_evaluation_splits():
    splits = {s: lo.OpenCharacters(s).characters() for s in ("val", "test", "test-layers")}
    everything = [c for cs in splits.values() for c in cs]
    assert [len(cs) for cs in splits.values()] == [lo.VAL_CHARACTERS, lo.TEST_CHARACTERS, lo.TEST_CHARACTERS]
    assert len(set(everything)) == len(everything)


def test_train_draws_optional_layers_sometimes_and_every_allowed_option(train_characters):
    held = set(lo.HELD_OUT_LAYERS)
    for k, name in enumerate(lo.ATTRIBUTE_NAMES):
        seen = {c[k] for c in train_characters}
        expected = {o.name for o in lo.OPEN_ATTRIBUTES[name] if (name, o.name) not in held}
        assert seen - {lo.NONE} == expected, name
        assert (lo.NONE in seen) == (name in lo.ABSENT), name
    for c in train_characters:
        for name, choice in zip(lo.ATTRIBUTE_NAMES, c):
            if choice != lo.NONE:
                assert c[0] in lo.OPTIONS[name][choice].sexes


def test_held_out_pairs_would_occur_in_training_without_the_rule():
    """The train rule has something to reject: unfiltered draws hold the test split's pairs often."""
    pairs = lo.held_out_pairs()
    rng = np.random.default_rng(0)
    raw = [lo.draw_character(rng) for _ in range(2000)]
    assert sum(bool(lo.pairs_of(c) & pairs) for c in raw) > 200
    assert sum(lo.has_held_out_layer(c) for c in raw) > 200


def test_combination_split_never_occurs_in_training(train_characters):
    pairs = lo.held_out_pairs()
    test = lo.OpenCharacters("test").characters()
    train = set(train_characters)
    assert not train & set(test)
    train_pairs = set().union(*(lo.pairs_of(c) for c in train_characters))
    for c in test:
        assert lo.pairs_of(c) & pairs and not lo.pairs_of(c) & pairs & train_pairs
        assert not lo.has_held_out_layer(c)
    # each option of a held-out pair is seen in training, only never together
    train_options = {(n, c[k]) for c in train_characters for k, n in enumerate(lo.ATTRIBUTE_NAMES)}
    for a, oa, b, ob in pairs:
        assert (a, oa) in train_options and (b, ob) in train_options
    # and no train character is a validation character
    assert not train & set(lo.OpenCharacters("val").characters())


def test_held_out_layers_appear_in_no_train_val_or_test_character(train_characters):
    def paths(options):
        return {l.path.format(sex=sex) for a, o in options for sex in lo.BOTH for l in lo.OPTIONS[a][o].layers}

    # the sheets only held-out options draw (the greatbow's arrow is every bow's)
    held_paths = paths(lo.HELD_OUT_LAYERS) - paths({(a, o) for a in lo.ATTRIBUTE_NAMES for o in lo.OPTIONS[a]}
                                                   - set(lo.HELD_OUT_LAYERS))
    assert len(held_paths) == 2 * len(lo.HELD_OUT_LAYERS) - 1  # the greatbow is one sheet for both sexes
    for split, chars in (("train", train_characters), ("val", lo.OpenCharacters("val").characters()),
                         ("test", lo.OpenCharacters("test").characters())):
        for c in chars:
            assert not {l.path for l in lo.character_layers(c)} & held_paths, (split, lo.describe(c))
    layers_test = lo.OpenCharacters("test-layers").characters()
    for k, c in enumerate(layers_test):
        a, o = lo.HELD_OUT_LAYERS[k % len(lo.HELD_OUT_LAYERS)]
        assert c[lo.ATTRIBUTE_NAMES.index(a)] == o


@pytest.mark.parametrize("dataset", ["lpc-open", "lpc-open-bg"])
def test_pair_source_gives_two_frames_of_one_sequence(dataset):
    source = pair_source(dataset, "train", 4)
    x1, x2, tx = source.sample_pairs(8, np.random.default_rng(0), max_gap=2)
    assert x1.shape == x2.shape == (8, 3, 64, 64) and tx is None
    assert 0 <= float(x1.min()) and float(x1.max()) <= 1
    p = source.sprites.sample_pairs(8, np.random.default_rng(0), dataset.endswith("-bg"))
    if dataset == "lpc-open":  # the white canvas shows wherever the character is not
        assert bool((p.x1.where(p.m1 == 0, 1.0) == 1).all()) and bool((p.x1 < 1).any())
    assert (np.abs(p.i - p.j) >= 1).all() and (p.m1.sum((1, 2, 3)) > 0).all()


def test_analogies_pair_two_different_test_characters():
    sprites = lo.OpenSprites.load("test-layers", 0)
    a = sprites.sample_analogies(6, np.random.default_rng(0), with_backgrounds=False)
    assert (a.character_a != a.character_b).all() and a.b2.shape == (6, 3, 64, 64)


def test_train_runs_on_the_open_dataset(tmp_path):
    train_main(["--out", str(tmp_path), "--dataset", "lpc-open", "--steps", "2", "--channels", "16",
                "--res-blocks", "1", "--tz-hidden", "16", "--batch", "8", "--sample-every", "0"])
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 2 and ckpt["train_config"]["dataset"] == "lpc-open"
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["val_scene"])


def test_cli_lists_characters_and_writes_their_sheet(tmp_path, capsys):
    lo.main(["--split", "test-layers", "--count", "2", "--sheet", str(tmp_path / "sheet.png")])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"test-layers 0: {lo.describe(lo.OpenCharacters('test-layers')[0])}"
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size == (2 * 13 * 64 + 8, 20 * 64)


def test_cli_rejects_a_count_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        lo.main(["--count", "0", "--sheet", str(tmp_path / "sheet.png")])
    assert e.value.code == 2 and "--count: got 0" in capsys.readouterr().err
    assert not (tmp_path / "sheet.png").exists()
