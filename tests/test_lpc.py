"""The LPC sprites dataset (§4.4): characters, split, layer order, masks, cache determinism, sampling."""
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from train import lpc
from train.backgrounds import make_backgrounds
from train.data_dir import find_data

pytestmark = pytest.mark.data("lpc")

CHARS = lpc.all_characters()


def find(**options) -> int:
    """Id of the first character with these options (by name)."""
    for k, c in enumerate(CHARS):
        if all(lpc.OPTION_NAMES[n][c[lpc.ATTRIBUTE_NAMES.index(n)]] == v for n, v in options.items()):
            return k
    raise KeyError(options)


# A bow character (quiver behind, arrow) and a longsword character (oversize), one of each sex.
BOW = find(sex="female", body="dark", arms="gold", hair="messy2_raven", armour="chain", greaves="metal",
           weapon="bow")
SWORD = find(sex="male", body="light", arms="plate", hair="ponytail_blonde", armour="leather",
             greaves="pants", weapon="longsword")


@pytest.fixture(scope="module")
def rendered():
    return {c: (lpc.drawn_layers(CHARS[c]), lpc.render_character(CHARS[c])) for c in (BOW, SWORD)}


def test_672_unique_characters_of_seven_attributes():
    assert CHARS.shape == (672, 7)
    assert len({tuple(c) for c in CHARS}) == 672
    assert lpc.ATTRIBUTE_NAMES == ("sex", "body", "arms", "hair", "armour", "greaves", "weapon")
    # every character's layers are of its own sex (or fit both)
    for c in CHARS[::7]:
        sex = lpc.SEXES[c[0]]
        assert all(l.path.split("/")[1].split("_")[0] in (sex, "either") for l in lpc.character_layers(c))


def test_split_is_500_72_100_disjoint_and_fixed_by_its_seed():
    ids = lpc.split_ids(0)
    assert {s: len(v) for s, v in ids.items()} == {"train": 500, "val": 72, "test": 100}
    assert np.array_equal(np.sort(np.concatenate(list(ids.values()))), np.arange(672))
    again, other = lpc.split_ids(0), lpc.split_ids(1)
    assert all(np.array_equal(ids[s], again[s]) for s in ids)
    assert not np.array_equal(ids["test"], other["test"])


def test_20_sequences_with_the_documented_frame_counts(rendered):
    assert lpc.SEQ_LENGTHS.tolist() == [7] * 4 + [8] * 4 + [9] * 4 + [6] * 4 + [13] * 4
    assert lpc.N_FRAMES == 172 and lpc.SEQ_STARTS[-1] + lpc.SEQ_LENGTHS[-1] == 172
    # The body sheet has pixels in exactly these cells of rows 0-19 (README) ...
    body = np.asarray(Image.open(find_data("lpc") / "body/male_light.png").convert("RGBA"))[..., 3]
    filled = body.reshape(21, 64, 13, 64).any(axis=(1, 3))[:20]  # (row, column)
    assert filled.sum(1).tolist() == lpc.SEQ_LENGTHS.tolist()
    assert all(filled[r, :n].all() for r, n in enumerate(lpc.SEQ_LENGTHS))
    # ... and so every stored frame of a character shows it.
    for _, frames in rendered.values():
        assert frames.shape == (172, 64, 64, 4) and frames.dtype == np.uint8
        assert (frames[..., 3].reshape(172, -1).max(1) > 0).all()


def test_layers_follow_the_draw_order():
    for c in (BOW, SWORD):
        slots = [l.slot for l in lpc.character_layers(CHARS[c])]
        assert slots == sorted(slots, key=lpc.DRAW_ORDER.index)
    bow = [l.slot for l in lpc.character_layers(CHARS[BOW])]
    assert bow[:2] == ["behind", "body"] and bow.index("hair") < bow.index("arms") < bow.index("weapon")
    assert bow.index("chainmail") < bow.index("tabard") < bow.index("hair")
    assert lpc.character_layers(CHARS[SWORD])[-1].slot == "oversize"


@pytest.mark.parametrize("character", [BOW, SWORD])
def test_overlapping_pixels_take_the_later_layer(rendered, character):
    layers, frames = rendered[character]
    stack = np.stack([f for _, f in layers])  # (L, 172, 64, 64, 4), bottom first
    alpha = stack[..., 3]
    present = alpha > 0
    top = len(layers) - 1 - np.argmax(present[::-1], axis=0)  # index of the topmost layer with a pixel
    top_rgba = np.take_along_axis(stack, top[None, ..., None], 0)[0]
    opaque = present.any(0) & (top_rgba[..., 3] == 255)
    overlap = opaque & (present.sum(0) >= 2)
    assert overlap.sum() > 10_000  # layers do overlap a lot
    np.testing.assert_array_equal(frames[opaque], top_rgba[opaque])
    # Independently of the list order: where two layers are opaque and no other is present (but
    # the body and quiver, at the bottom), the README's later one wins: hair over the body, the
    # body over the quiver (behind), the weapon over the body, ...
    names = [l.slot for l, _ in layers]
    pairs = [("body", "hair"), ("behind", "body"), ("body", "weapon"), ("hair", "arms"), ("body", "oversize")]
    checked = 0
    for below, above in pairs:
        if below not in names or above not in names:
            continue
        lo, hi = names.index(below), names.index(above)
        others = [k for k, n in enumerate(names) if n not in (below, above, "body", "behind")]
        two = (alpha[lo] == 255) & (alpha[hi] == 255) & ~present[others].any(0)  # body, quiver: bottom
        if not two.any():
            continue
        np.testing.assert_array_equal(frames[two], stack[hi][two])
        assert (frames[two] != stack[lo][two]).any()
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("character", [BOW, SWORD])
def test_mask_is_where_some_layer_has_a_pixel(rendered, character):
    layers, frames = rendered[character]
    any_layer = np.stack([f[..., 3] for _, f in layers]).max(0) > 0
    np.testing.assert_array_equal(frames[..., 3] > 0, any_layer)
    assert (frames[~any_layer] == 0).all()  # transparent pixels carry no colour


def test_partial_alpha_is_composited_over():
    layer = np.zeros((1, 1, 1, 4), np.uint8)
    bottom, top = layer.copy(), layer.copy()
    bottom[..., :] = (200, 0, 0, 255)
    top[..., :] = (0, 0, 100, 51)  # alpha 0.2
    out = lpc.over([bottom, top])
    np.testing.assert_array_equal(out[0, 0, 0], [160, 0, 20, 255])
    lone = lpc.over([layer, top])
    np.testing.assert_array_equal(lone[0, 0, 0], [0, 0, 100, 51])


def test_oversize_weapon_is_drawn_on_top_in_its_cell_window(rendered):
    layers, frames = rendered[SWORD]
    slash = lpc.oversize_frames("slash")
    sheet = np.asarray(Image.open(find_data("lpc") / "weapon_oversize/male_longsword.png").convert("RGBA"))
    # frame 3 of the 'left' slash: cell (row 1, column 3) of the 192-px grid, window at (64, 64)
    cell = sheet[192 + 64:192 + 128, 3 * 192 + 64:3 * 192 + 128]
    f = lpc.SEQ_STARTS[4 * 3 + 1] + 3
    sword = cell[..., 3] == 255
    assert sword.sum() > 50
    np.testing.assert_array_equal(frames[f][sword], cell[sword])
    # other animations carry no sword; the generator's cell copy drops rows 0-7 below it
    sword_frames = layers[-1][1]
    assert sword_frames[:slash.start, ..., 3].max() == 0 and sword_frames[slash.stop:, ..., 3].max() == 0
    assert frames[slash, :8][sword_frames[slash, :8, :, 3] == 0].max() == 0


def test_same_seed_same_bytes_and_the_recipe_keys_the_cache(tmp_path, monkeypatch):
    a = lpc.build_split("test", tmp_path / "a", seed=0, limit=2)
    b = lpc.build_split("test", tmp_path / "b", seed=0, limit=2)
    assert a.name == b.name and lpc.recipe_key(0) in a.name
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b)]
    assert digest[0] == digest[1]
    data = lpc.load_split("test", tmp_path / "a", seed=0, limit=2, build=False)
    ids = lpc.split_ids(0)["test"][:2]
    np.testing.assert_array_equal(data.ids, ids)
    np.testing.assert_array_equal(data.attributes, CHARS[ids])
    np.testing.assert_array_equal(data.frames[1], lpc.render_character(CHARS[ids[1]]))
    assert lpc.recipe_key(1) != lpc.recipe_key(0)  # another split is another cache file
    key = lpc.recipe_key(0)
    monkeypatch.setattr(lpc, "DRAW_ORDER", lpc.DRAW_ORDER[1:] + lpc.DRAW_ORDER[:1])
    assert lpc.recipe_key(0) != key  # so is another recipe
    with pytest.raises(FileNotFoundError):
        lpc.load_split("val", tmp_path / "a", limit=2, build=False)


def test_composite_uses_the_mask():
    rgba = torch.zeros(2, 4, 64, 64)
    rgba[:, :3] = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    rgba[:, 3, 10:20, 10:20] = 1.0
    rgba[:, 3, 30, 30] = 0.25
    bg = torch.rand(2, 3, 64, 64)
    out = lpc.composite(rgba, bg)
    outside = rgba[:, 3:] == 0
    torch.testing.assert_close(out[outside.expand_as(out)], bg[outside.expand_as(out)])
    torch.testing.assert_close(out[:, :, 15, 15], torch.tensor([[1.0, 0.0, 0.0]] * 2))
    torch.testing.assert_close(out[:, :, 30, 30], 0.25 * torch.tensor([1.0, 0, 0]) + 0.75 * bg[:, :, 30, 30])
    white = lpc.composite(rgba)
    assert white[:, :, 0, 0].eq(1).all() and white[:, :, 15, 15].eq(torch.tensor([1.0, 0, 0])).all()
    with pytest.raises(ValueError, match=r"expected \(B, 4, H, W\)"):
        lpc.composite(rgba[:, :3], bg)
    with pytest.raises(ValueError, match="background"):
        lpc.composite(rgba, bg[:, :, :32])


@pytest.fixture(scope="module")
def sprites(rendered):
    """A 3-character split in memory (no cache) with 5 backgrounds."""
    chars = [BOW, SWORD, 0]
    frames = np.stack([rendered[c][1] if c in rendered else lpc.render_character(CHARS[c]) for c in chars])
    data = lpc.SpriteSplit(frames, CHARS[chars], np.array(chars))
    bgs = torch.from_numpy(make_backgrounds("test", 5, 0, 64)).permute(0, 3, 1, 2).contiguous()
    return lpc.Sprites(data, bgs)


def expected(sprites, character, sequence, index, background):
    rgba = lpc.to_tensor(sprites.data.frames[character, lpc.SEQ_STARTS[sequence] + index])
    bg = torch.ones(len(character), 3, 64, 64) if background is None else sprites.backgrounds[background]
    return lpc.composite(rgba, bg), (rgba[:, 3:] > 0).float()


@pytest.mark.parametrize("with_backgrounds", [True, False])
def test_pairs_are_two_distinct_frames_of_one_sequence(sprites, with_backgrounds):
    p = sprites.sample_pairs(64, np.random.default_rng(0), with_backgrounds=with_backgrounds)
    assert p.x1.shape == p.x2.shape == (64, 3, 64, 64) and p.m1.shape == (64, 1, 64, 64)
    assert p.x1.dtype == torch.float32 and 0 <= p.x1.min() and p.x1.max() <= 1
    assert (p.i != p.j).all() and (np.maximum(p.i, p.j) < lpc.SEQ_LENGTHS[p.sequence]).all()
    bg = p.background if with_backgrounds else None
    assert (p.background >= 0).all() == with_backgrounds
    for x, m, idx in ((p.x1, p.m1, p.i), (p.x2, p.m2, p.j)):
        ex, em = expected(sprites, p.character, p.sequence, idx, bg)
        torch.testing.assert_close(x, ex)
        torch.testing.assert_close(m, em)
    assert 0.02 < p.m1.mean() < 0.5
    near = sprites.sample_pairs(200, np.random.default_rng(1), max_gap=1)
    assert (np.abs(near.i - near.j) == 1).all()


def test_analogies_pair_two_characters_on_the_same_sequence_and_frames(sprites):
    a = sprites.sample_analogies(32, np.random.default_rng(2))
    assert (a.character_a != a.character_b).all() and (a.i != a.j).all()
    assert a.masks.shape == (32, 4, 1, 64, 64)
    sequence = 4 * a.animation.numpy() + a.viewpoint
    assert set(a.animation.tolist()) <= set(range(5))
    cases = ((a.a1, 0, a.character_a, a.i, a.background_a), (a.a2, 1, a.character_a, a.j, a.background_a),
             (a.b1, 2, a.character_b, a.i, a.background_b), (a.b2, 3, a.character_b, a.j, a.background_b))
    for x, k, c, idx, bg in cases:
        ex, em = expected(sprites, c, sequence, idx, bg)
        torch.testing.assert_close(x, ex)
        torch.testing.assert_close(a.masks[:, k], em)
    plain = sprites.sample_analogies(8, np.random.default_rng(3), with_backgrounds=False)
    assert (plain.background_a == -1).all() and plain.b2[:, :, 0, 0].eq(1).all()


def test_contact_sheet_layout(rendered):
    image = lpc.contact_sheet([rendered[BOW][1], rendered[SWORD][1]], scale=1, gap=8)
    assert image.size == (2 * 13 * 64 + 8, 20 * 64)
