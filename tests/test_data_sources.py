"""The user's own data: ImageFolder trees and tensor files as DataSpecs, preprocessing, corruptions, streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from calibviz.data import IMAGE_CORRUPTIONS, DataSpec
from calibviz.data_sources import DataSourceError, InputSet, Preprocess, open_inputs, seeded_split_codes

CLASSES = {"zero": 0, "one": 1, "two": 2}  # folder name -> digit; sorted by name: one, two, zero
PER_CLASS = 4


def _digit_rgb(index: int) -> np.ndarray:
    """A digits image (8x8, 0..16) upsampled 2x to 16x16, as an RGB uint8 array with a tint per channel."""
    from sklearn.datasets import load_digits

    img = load_digits().images[index]
    big = np.kron(img, np.ones((2, 2))) / 16.0
    return np.round(np.stack([big, big * 0.5, 1.0 - big], axis=-1) * 255).astype(np.uint8)


def _digit_indices(digit: int) -> list[int]:
    from sklearn.datasets import load_digits

    return [int(i) for i in np.flatnonzero(load_digits().target == digit)[:PER_CLASS]]


def _write_tree(root: Path) -> dict[str, np.ndarray]:
    """3 class folders of PNGs (names chosen so sorting matters); returns relpath -> the RGB array written."""
    written: dict[str, np.ndarray] = {}
    for cls, digit in CLASSES.items():
        (root / cls).mkdir(parents=True)
        for k, idx in enumerate(_digit_indices(digit)):
            name = f"img_{(PER_CLASS - k) * 7}.png"  # 28, 21, 14, 7: creation order is not sorted order
            arr = _digit_rgb(idx)
            Image.fromarray(arr).save(root / cls / name)
            written[f"{cls}/{name}"] = arr
    return written


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("pets")
    return root, _write_tree(root)


@pytest.fixture(scope="module")
def split_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("splits")
    _write_tree(root / "train")
    (root / "test" / "one").mkdir(parents=True)
    (root / "test" / "zero").mkdir(parents=True)
    Image.fromarray(_digit_rgb(1)).save(root / "test" / "one" / "a.png")
    Image.fromarray(_digit_rgb(0)).convert("L").save(root / "test" / "zero" / "b.png")  # grayscale -> RGB
    return root


def _all_x(inputs: InputSet, batch_size: int = 5, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*inputs.batches(batch_size, num_workers), strict=True)
    return torch.cat(xs), torch.cat(ys)


# ------------------------------------------------------------------------------------------------ spec strings


@pytest.mark.parametrize("text", [
    "folder:/data/pets:test", "folder:/data/pets:test:noise-3", "tensors:x.npz:all", "folder:/a:b:c/pets:val",
    "folder:/data/x:test:all", "tensors:/t/x.safetensors:train:jpeg-5", "folder:rel/dir:all:contrast-1",
])
def test_path_specs_round_trip_through_str_and_parse(text: str) -> None:
    spec = DataSpec.of(text)
    assert str(spec) == text
    assert DataSpec.parse(text) == spec == DataSpec.parse(str(spec))
    assert spec.source in ("folder", "tensors") and not spec.builtin


def test_path_spec_fields_and_the_colon_rule() -> None:
    s = DataSpec.of("folder:/data/pets:test:noise-3")
    assert (s.source, s.path, s.name, s.split, s.corruption, s.severity) == (
        "folder", "/data/pets", "pets", "test", "noise", 3)
    assert s.shifted and s.label == "test — noise, severity 3"
    val = s.with_split("val")
    assert str(val) == "folder:/data/pets:val" and not val.shifted and val.path == "/data/pets"
    assert DataSpec.of("tensors:x.npz").split == "all" and str(DataSpec.of("tensors:x.npz")) == "tensors:x.npz:all"
    assert DataSpec.of("tensors:/d/x.npz:test").name == "x"
    # a path with ':' in it: a last segment that is not a split or corruption belongs to the path
    assert DataSpec.of("folder:C:\\data\\pets").path == "C:\\data\\pets"
    assert DataSpec.of("folder:/a:test:all").path == "/a:test"  # a path ending in ':test' is written with its split
    assert DataSpec.of("folder:noise-3").path == "noise-3"  # the path is never empty
    assert DataSpec.from_path("folder", "/a:test", "all") == DataSpec.of("folder:/a:test:all")
    assert DataSpec.from_path("tensors", "x.npz", "val", "blur", 2) == DataSpec.of("tensors:x.npz:val:blur-2")


def test_existing_specs_are_unchanged() -> None:
    b = DataSpec.of("digits-noise-3:test")
    assert b.builtin and b.path == "" and str(b) == "digits-noise-3:test"
    assert str(b.with_split("val")) == "digits:val"
    bundle = DataSpec.of("cifar10:test")
    assert bundle.source == "bundle" and str(bundle) == "cifar10:test"
    assert DataSpec.parse("folder:test", bundle=True).source == "bundle"  # explicit bundle parsing still wins


@pytest.mark.parametrize("bad,word", [
    ("folder:", "no path"), ("folder::test", "no path"), ("folder:/x:dev", "split 'dev'"),
    ("tensors:/x.npz:test:fog-3", "corruption 'fog'"), ("folder:/x:test:noise-9", "severity 9"),
    ("folder:/x:test:noise-0", "severity 0"),
])
def test_bad_path_specs_say_what_is_wrong(bad: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        DataSpec.of(bad)


# ------------------------------------------------------------------------------------------------------ folders


def test_folder_rows_are_in_imagefolder_order(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, written = tree
    inputs = open_inputs(f"folder:{root}:all")
    assert inputs.class_names == ("one", "two", "zero")
    expected = [f"{c}/img_{k}.png" for c in ("one", "two", "zero") for k in (14, 21, 28, 7)]  # string order
    assert inputs.relpaths == tuple(expected)
    assert inputs.n == len(inputs) == 12 and inputs.input_kind == "image"
    np.testing.assert_array_equal(inputs.labels, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(inputs.sample_id, np.arange(12))
    x, y = _all_x(inputs)
    assert x.dtype == torch.float32 and x.shape == (12, 3, 16, 16) and y.dtype == torch.int64
    np.testing.assert_array_equal(y.numpy(), inputs.labels)
    for i, rel in enumerate(expected):  # pixels scaled to [0, 1], channels first
        np.testing.assert_allclose(x[i].numpy(), written[rel].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_nested_and_hidden_files_follow_imagefolder_order(tmp_path: Path) -> None:
    root = tmp_path / "nested"
    for rel in ("cat/b.png", "cat/a/x.png", "cat/a-b/y.jpg", "cat/.cache/z.png", "cat/._c.png", "Dog/d.JPEG"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / rel, format="JPEG" if rel.lower().endswith(("jpg", "jpeg")) else "PNG")
    (root / ".git").mkdir()
    inputs = open_inputs(f"folder:{root}")
    assert inputs.class_names == ("Dog", "cat")  # sorted by name, as torchvision sorts them
    # torchvision: sorted(os.walk(...)) by folder, files sorted within each; hidden ones skipped
    assert inputs.relpaths == ("Dog/d.JPEG", "cat/b.png", "cat/a/x.png", "cat/a-b/y.jpg")


def test_folder_seeded_splits_are_fixed_disjoint_and_align_with_all(tree: tuple[Path, dict]) -> None:
    root, _ = tree
    every = open_inputs(f"folder:{root}:all")
    parts = {s: open_inputs(f"folder:{root}:{s}") for s in ("train", "val", "test")}
    ids = np.concatenate([p.sample_id for p in parts.values()])
    assert sorted(ids.tolist()) == list(range(12))
    assert [p.n for p in parts.values()] == [6, 3, 3]
    codes = seeded_split_codes(12)
    for code, (s, p) in enumerate(parts.items()):
        np.testing.assert_array_equal(p.sample_id, np.flatnonzero(codes == code))
        np.testing.assert_array_equal(p.labels, every.labels[p.sample_id])
        assert p.relpaths == tuple(every.relpaths[i] for i in p.sample_id)
        np.testing.assert_array_equal(open_inputs(f"folder:{root}:{s}").sample_id, p.sample_id)
    x_all, _ = _all_x(every)
    x_test, _ = _all_x(parts["test"])
    torch.testing.assert_close(x_test, x_all[torch.from_numpy(parts["test"].sample_id.copy())], rtol=0, atol=0)


def test_seeded_split_codes_are_fixed_and_sized() -> None:
    a = seeded_split_codes(1000)
    np.testing.assert_array_equal(a, seeded_split_codes(1000))
    assert np.bincount(a).tolist() == [500, 250, 250]


def test_top_level_split_folders_become_the_splits(split_tree: Path) -> None:
    every = open_inputs(f"folder:{split_tree}")
    assert every.class_names == ("one", "two", "zero")
    assert every.n == 14 and every.relpaths[:2] == ("train/one/img_14.png", "train/one/img_21.png")
    test = open_inputs(f"folder:{split_tree}:test")
    assert test.relpaths == ("test/one/a.png", "test/zero/b.png")
    np.testing.assert_array_equal(test.labels, [0, 2])
    np.testing.assert_array_equal(test.sample_id, [12, 13])
    assert open_inputs(f"folder:{split_tree}:train").n == 12
    with pytest.raises(DataSourceError, match="no rows in split 'val'"):
        open_inputs(f"folder:{split_tree}:val")
    x, _ = _all_x(test)
    gray = x[1]
    assert gray.shape == (3, 16, 16)
    torch.testing.assert_close(gray[0], gray[1])
    torch.testing.assert_close(gray[1], gray[2])


# ---------------------------------------------------------------------------------------------- preprocessing


def _triangle_downscale_by_2(v: np.ndarray) -> np.ndarray:
    """Antialiased bilinear downscaling by exactly 2, worked by hand: output i is centred at input 2i + 1, input
    pixel centres j + 0.5 weigh 1 - |d| / 2, and the weights inside the image are normalised to sum to 1."""
    out = []
    for i in range(len(v) // 2):
        centre = 2 * i + 1.0
        w = np.array([max(0.0, 1 - abs(j + 0.5 - centre) / 2) for j in range(len(v))])
        out.append(float((w * v).sum() / w.sum()))
    return np.asarray(out)


def test_preprocess_math_by_hand(tmp_path: Path) -> None:
    cols = np.array([0.0, 0.2, 1.0, 0.6, 0.3, 0.9, 0.1, 0.5], dtype=np.float32)
    img = np.stack([np.tile(cols + 0.0 * c, (12, 1)) * (1 - 0.2 * c) for c in range(3)])  # (3, 12, 8): H=12, W=8
    np.savez(tmp_path / "one.npz", x=img[None], y=np.array([0]))
    pre = Preprocess(resize=4, center_crop=4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 2.0))
    x, _ = _all_x(open_inputs(f"tensors:{tmp_path / 'one.npz'}", pre))
    assert x.shape == (1, 3, 4, 4)  # shorter side (W=8) -> 4, so H -> 6; crop rows 1..4
    for c in range(3):
        row = _triangle_downscale_by_2(img[c, 0])
        expected = (row - pre.mean[c]) / pre.std[c]
        np.testing.assert_allclose(x[0, c].numpy(), np.tile(expected, (4, 1)), atol=1e-6)
    crop_only, _ = _all_x(open_inputs(f"tensors:{tmp_path / 'one.npz'}", Preprocess(center_crop=4)))
    np.testing.assert_array_equal(crop_only[0].numpy(), img[:, 4:8, 2:6])
    same, _ = _all_x(open_inputs(f"tensors:{tmp_path / 'one.npz'}", Preprocess(resize=8, mean=(0.5,))))
    np.testing.assert_allclose(same[0].numpy(), img - 0.5, atol=1e-7)  # resize to its own size is a no-op


def test_preprocess_json_keys_and_errors() -> None:
    p = Preprocess.from_json('{"resize": 256, "center_crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.2]}')
    assert p == Preprocess(256, 224, (0.485, 0.456, 0.406), (0.2,))
    assert p.key() == '{"center_crop":224,"mean":[0.485,0.456,0.406],"resize":256,"std":[0.2]}'
    assert Preprocess.from_json(p.key()) == p and hash(Preprocess.from_json(p.key())) == hash(p)
    assert Preprocess(mean=(0,)).key() == Preprocess(mean=(0.0,)).key() == '{"mean":[0.0]}'
    assert Preprocess.from_json("{}").key() == "{}" == Preprocess().key()
    with pytest.raises(DataSourceError, match=r"unknown keys \['crop', 'flip'\]"):
        Preprocess.from_json('{"resize": 8, "crop": 4, "flip": true}')
    for bad, word in (('{"resize": 0}', "resize"), ('{"resize": 2.5}', "resize"), ('{"std": [0]}', "positive"),
                      ('{"mean": "a"}', "mean"), ("[1]", "JSON object"), ("{", "not valid JSON"),
                      ('{"mean": [1, 2], "std": [1, 2, 3]}', "differ in length")):
        with pytest.raises(DataSourceError, match=word):
            Preprocess.from_json(bad)


def test_preprocess_errors_at_read_time(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = tree
    with pytest.raises(DataSourceError, match="center_crop 32 is larger than the image"):
        _all_x(open_inputs(f"folder:{root}", Preprocess(center_crop=32)))
    with pytest.raises(DataSourceError, match="'mean' has 2 values but .* has 3 channels"):
        _all_x(open_inputs(f"folder:{root}", Preprocess(mean=(0.5, 0.5))))
    odd = tmp_path / "odd"
    (odd / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(odd / "a" / "1.png")
    Image.new("RGB", (8, 10)).save(odd / "a" / "2.png")
    with pytest.raises(DataSourceError, match="images differ in size.*'resize' and 'center_crop'"):
        _all_x(open_inputs(f"folder:{odd}"))
    x, _ = _all_x(open_inputs(f"folder:{odd}", Preprocess(resize=8, center_crop=8)))
    assert x.shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------------------------------ tensor files


def _tensor_data(n: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.integers(0, 256, size=(n, 3, 6, 6), dtype=np.uint8), "y": np.arange(n) % 3,
            "split": np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0])[:n]}


def test_npz_and_safetensors_give_the_same_rows(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    d = _tensor_data()
    np.savez(tmp_path / "d.npz", **d, class_names=np.array(["cat", "dog", "emu"]))
    save_file(d, str(tmp_path / "d.safetensors"), metadata={"class_names": '["cat", "dog", "emu"]'})
    for split, rows in (("all", range(10)), ("test", [5, 6, 7, 8]), ("val", [3, 4]), ("train", [0, 1, 2, 9])):
        a = open_inputs(f"tensors:{tmp_path / 'd.npz'}:{split}")
        b = open_inputs(f"tensors:{tmp_path / 'd.safetensors'}:{split}")
        assert a.class_names == b.class_names == ("cat", "dog", "emu") and a.relpaths is None
        np.testing.assert_array_equal(a.sample_id, list(rows))
        np.testing.assert_array_equal(b.sample_id, list(rows))
        np.testing.assert_array_equal(a.labels, d["y"][list(rows)])
        xa, ya = _all_x(a, batch_size=3)
        xb, yb = _all_x(b, batch_size=3)
        torch.testing.assert_close(xa, xb, rtol=0, atol=0)
        np.testing.assert_allclose(xa.numpy(), d["x"][list(rows)] / 255.0, atol=1e-7)  # uint8 scaled to [0, 1]
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_float_tensors_grayscale_and_default_names(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((8, 5, 5)).astype(np.float32)  # (N, H, W): one channel
    np.savez(tmp_path / "g.npz", x=x, y=np.array([0, 1, 1, 0, 3, 3, 0, 1], dtype=np.int32))
    inputs = open_inputs(f"tensors:{tmp_path / 'g.npz'}")
    assert inputs.class_names == ("0", "1", "2", "3")
    xs, _ = _all_x(inputs)
    np.testing.assert_array_equal(xs.numpy(), x[:, None])
    test = open_inputs(f"tensors:{tmp_path / 'g.npz'}:test")  # no 'split': the seeded split
    np.testing.assert_array_equal(test.sample_id, np.flatnonzero(seeded_split_codes(8) == 2))


@pytest.mark.parametrize("arrays,word", [
    ({"x": np.zeros((4, 1, 3, 3), np.float32), "y": np.zeros(5, np.int64)}, "'x' has 4 rows but 'y' has 5"),
    ({"x": np.zeros((4, 1, 3, 3), np.int32), "y": np.zeros(4, np.int64)}, "'x' must be float or uint8"),
    ({"x": np.zeros((4, 9), np.float32), "y": np.zeros(4, np.int64)}, r"'x' must be images \(N, C, H, W\)"),
    ({"x": np.zeros((4, 1, 3, 3), np.float32), "y": np.zeros(4, np.float32)}, "'y' must be \\(N,\\) integers"),
    ({"x": np.zeros((4, 1, 3, 3), np.float32), "y": np.zeros((4, 2), np.int64)}, "'y' must be \\(N,\\) integers"),
    ({"x": np.zeros((4, 1, 3, 3), np.float32), "y": np.zeros(4, np.int64), "split": np.array([0, 1, 2, 3])},
     "'split' must be"),
    ({"x": np.zeros((4, 1, 3, 3), np.float32)}, "no 'y'"),
    ({"x": np.zeros((4, 1, 3, 3), np.float32), "y": -np.ones(4, np.int64)}, "negative"),
])
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_bad_tensor_files_say_what_is_wrong(tmp_path: Path, arrays: dict, word: str, fmt: str) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / f"bad.{fmt}"
    if fmt == "npz":
        np.savez(path, **arrays)
    else:
        save_file(arrays, str(path))
    with pytest.raises(DataSourceError, match=word) as err:
        open_inputs(f"tensors:{path}")
    assert str(path) in str(err.value)


def test_tensor_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        open_inputs(f"tensors:{tmp_path / 'none.npz'}")
    (tmp_path / "x.pt").write_bytes(b"\0")
    with pytest.raises(DataSourceError, match=r"must end in \.npz or \.safetensors"):
        open_inputs(f"tensors:{tmp_path / 'x.pt'}")
    np.savez(tmp_path / "obj.npz", x=np.zeros((2, 1, 2, 2)), y=np.array([0, 1]),
             class_names=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataSourceError, match="unpickling"):
        open_inputs(f"tensors:{tmp_path / 'obj.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataSourceError, match="junk.npz"):
        open_inputs(f"tensors:{tmp_path / 'junk.npz'}")
    np.savez(tmp_path / "few.npz", x=np.zeros((2, 1, 2, 2)), y=np.array([0, 4]), class_names=np.array(["a"]))
    with pytest.raises(DataSourceError, match="only 1 class_names"):
        open_inputs(f"tensors:{tmp_path / 'few.npz'}")


# ------------------------------------------------------------------------------------------ corruptions, workers


@pytest.mark.parametrize("corruption", IMAGE_CORRUPTIONS)
def test_corruptions_are_deterministic_in_range_and_grow_with_severity(tree: tuple[Path, dict],
                                                                       corruption: str) -> None:
    root, _ = tree
    pre = Preprocess(resize=32)
    clean, _ = _all_x(open_inputs(f"folder:{root}", pre))
    dist = []
    for k in (1, 3, 5):
        spec = f"folder:{root}:all:{corruption}-{k}"
        a, ya = _all_x(open_inputs(spec, pre))
        b, _ = _all_x(open_inputs(spec, pre), batch_size=7)
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same per (row, severity), whatever the batching
        assert a.shape == clean.shape and a.min() >= 0 and a.max() <= 1
        np.testing.assert_array_equal(ya.numpy(), np.repeat([0, 1, 2], 4))
        dist.append(float((a - clean).abs().mean()))
    assert 0 < dist[0] < dist[1] < dist[2], dist
    test = open_inputs(f"folder:{root}:test:{corruption}-3", pre)  # a split's rows are corrupted as in `all`
    full, _ = _all_x(open_inputs(f"folder:{root}:all:{corruption}-3", pre))
    torch.testing.assert_close(_all_x(test)[0], full[torch.from_numpy(test.sample_id.copy())], rtol=0, atol=0)


def test_corruption_comes_before_normalisation(tree: tuple[Path, dict]) -> None:
    root, _ = tree
    plain, _ = _all_x(open_inputs(f"folder:{root}:all:contrast-2"))
    normed, _ = _all_x(open_inputs(f"folder:{root}:all:contrast-2", Preprocess(mean=(0.5,), std=(0.25,))))
    torch.testing.assert_close(normed, (plain - 0.5) / 0.25)


def test_workers_give_the_same_tensors(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = tree
    for spec in (f"folder:{root}:all:noise-3", f"folder:{root}:test:shift-4"):
        inputs = open_inputs(spec, Preprocess(resize=20, center_crop=16, mean=(0.5,)))
        x0, y0 = _all_x(inputs, batch_size=4, num_workers=0)
        x2, y2 = _all_x(inputs, batch_size=4, num_workers=2)
        torch.testing.assert_close(x0, x2, rtol=0, atol=0)
        np.testing.assert_array_equal(y0.numpy(), y2.numpy())
    from safetensors.numpy import save_file

    save_file(_tensor_data(), str(tmp_path / "d.safetensors"))
    t = open_inputs(f"tensors:{tmp_path / 'd.safetensors'}:all:jpeg-2")
    torch.testing.assert_close(_all_x(t, 3, 0)[0], _all_x(t, 3, 2)[0], rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------- folder errors


def test_bad_folders_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataSourceError, match=f"image folder '{missing}' does not exist"):
        open_inputs(f"folder:{missing}")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "a.png")
    with pytest.raises(DataSourceError, match=f"image folder '{flat}' has no class sub-folders"):
        open_inputs(f"folder:{flat}")
    no_images = tmp_path / "noimg"
    (no_images / "cat").mkdir(parents=True)
    (no_images / "cat" / "notes.txt").write_text("x")
    (no_images / "cat" / ".hidden.png").write_bytes(b"")
    with pytest.raises(DataSourceError, match=f"image folder '{no_images}' has no images"):
        open_inputs(f"folder:{no_images}")
    one_empty = tmp_path / "oneempty"
    (one_empty / "cat").mkdir(parents=True)
    (one_empty / "dog").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(one_empty / "cat" / "a.png")
    with pytest.raises(DataSourceError, match=r"class folders \['dog'\] hold no images"):
        open_inputs(f"folder:{one_empty}")
    mixed = tmp_path / "mixed"
    (mixed / "train" / "cat").mkdir(parents=True)
    (mixed / "extra").mkdir(parents=True)
    with pytest.raises(DataSourceError, match=r"split folders \['train'\] and other folders \['extra'\]"):
        open_inputs(f"folder:{mixed}")
    with pytest.raises(DataSourceError, match="not an image folder or tensor file"):
        open_inputs("digits:test")


def test_an_unreadable_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    (root / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "cat" / "a.png")
    (root / "cat" / "b.png").write_bytes(b"this is not a png")
    inputs = open_inputs(f"folder:{root}")  # listing does not open images: a big folder opens at once
    assert inputs.n == 2
    bad = str(root / "cat" / "b.png")
    with pytest.raises(DataSourceError, match=f"image '{bad}' cannot be read"):
        _all_x(inputs, num_workers=0)
    with pytest.raises(DataSourceError, match=f"image '{bad}' cannot be read"):
        _all_x(inputs, num_workers=2)


def test_batch_arguments_are_checked(tree: tuple[Path, dict]) -> None:
    with pytest.raises(DataSourceError, match="batch_size"):
        open_inputs(f"folder:{tree[0]}").batches(0)
    with pytest.raises(ValueError, match="has no path"):
        DataSpec.from_path("builtin", "/x")
