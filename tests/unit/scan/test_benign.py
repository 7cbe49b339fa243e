"""Files written by the real libraries (and PyTorch's layouts, built by hand) are not flagged."""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import io
import pickle
import tarfile
import uuid
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from rearguard.models.integrity.scan.engine import scan_file


class _Storage:
    """Stands for a torch storage: torch.save writes it as a persistent id."""

    def __init__(self, key: str, dtype: str, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape


def _global(module: str, name: str) -> type:
    """A stand-in class that pickles as ``module.name`` (torch is not installed)."""
    cls = type(name, (), {})
    cls.__module__ = module
    cls.__qualname__ = name
    return cls


def torch_zip(path: Path) -> Path:
    """torch.save's zip layout: archive/data.pkl (persistent ids), archive/data/N, version."""
    rebuild = _global("torch._utils", "_rebuild_tensor_v2")
    storage_type = _global("torch", "FloatStorage")
    ordered = collections.OrderedDict

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                return ("storage", storage_type, obj.key, "cpu", obj.numel)
            return None

        def reducer_override(self, obj: object) -> object:
            if isinstance(obj, _Tensor):
                return rebuild, (obj.storage, 0, obj.shape, (1,), False, ordered())
            return NotImplemented

    state = ordered(
        [
            ("fc.weight", _Tensor(_Storage("0", "FloatStorage", 6), (2, 3))),
            ("fc.bias", _Tensor(_Storage("1", "FloatStorage", 2), (2,))),
        ]
    )
    buffer = io.BytesIO()
    with _importable(rebuild, storage_type):
        Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", np.arange(6, dtype="<f4").tobytes())
        archive.writestr("archive/data/1", np.zeros(2, dtype="<f4").tobytes())
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/.data/serialization_id", "1234567890\n")
    return path


class _importable:
    """Lets pickle find stand-in classes under torch's names while they are written."""

    def __init__(self, *classes: type) -> None:
        self._classes = classes
        self._added: list[str] = []

    def __enter__(self) -> None:
        import sys
        import types

        for cls in self._classes:
            module = sys.modules.get(cls.__module__)
            if module is None:
                module = types.ModuleType(cls.__module__)
                sys.modules[cls.__module__] = module
                self._added.append(cls.__module__)
            setattr(module, cls.__qualname__, cls)

    def __exit__(self, *exc_info: object) -> None:
        import sys

        for name in self._added:
            del sys.modules[name]


def legacy_torch_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("sys_info", pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2)),
            ("pickle", pickle.dumps(collections.OrderedDict(step=3), protocol=2)),
            ("storages", pickle.dumps(0, protocol=2)),
            ("tensors", pickle.dumps(0, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _estimators() -> dict[str, object]:
    rng = np.random.default_rng(0)
    features, labels = rng.random((40, 4)), np.array([0, 1] * 20)
    texts = ["the cat", "a dog", "the dog barks", "cats purr"] * 5
    return {
        "logistic": LogisticRegression().fit(features, labels),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(features, labels),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels),
        "tfidf": TfidfVectorizer().fit(texts),
        "onehot": OneHotEncoder().fit([["a"], ["b"], ["c"]]),
    }


@pytest.mark.parametrize("name", ["logistic", "forest", "pipeline", "tfidf", "onehot"])
@pytest.mark.parametrize("how", ["pickle", "joblib", "joblib-zlib", "joblib-gzip", "joblib-xz"])
def test_scikit_learn_estimators(tmp_path: Path, name: str, how: str) -> None:
    estimator = _estimators()[name]
    path = tmp_path / "model"
    if how == "pickle":
        path.write_bytes(pickle.dumps(estimator, protocol=5))
    else:
        compress = {"joblib": 0, "joblib-zlib": ("zlib", 3), "joblib-gzip": ("gzip", 3)}
        joblib.dump(estimator, path, compress=compress.get(how, ("xz", 3)))

    assert scan_file(path) == []


def test_numpy_files(tmp_path: Path) -> None:
    arrays = {
        "f4": np.arange(12, dtype="f4").reshape(3, 4),
        "i8": np.arange(5),
        "c16": np.ones(3, dtype=complex),
        "rec": np.zeros(2, dtype=[("x", "f8"), ("y", "i4")]),
        "obj": np.array([{"a": 1}, [1, 2], "text", None], dtype=object),
    }
    np.save(tmp_path / "one.npy", arrays["f4"])
    np.save(tmp_path / "objects.npy", arrays["obj"], allow_pickle=True)
    np.savez(tmp_path / "many.npz", **arrays)
    np.savez_compressed(tmp_path / "many_compressed.npz", **arrays)
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps(arrays, protocol=4))
    (tmp_path / "arrays5.pkl").write_bytes(pickle.dumps(arrays, protocol=5))
    (tmp_path / "dtypes.pkl").write_bytes(
        pickle.dumps([np.dtype("f8"), np.float32(1.5), np.int64(3), np.random.RandomState(0)])
    )

    for path in sorted(tmp_path.iterdir()):
        assert scan_file(path) == [], path.name


def test_pytorch_layouts_built_by_hand(tmp_path: Path) -> None:
    assert scan_file(torch_zip(tmp_path / "pytorch_model.bin")) == []
    assert scan_file(legacy_torch_tar(tmp_path / "legacy.pt")) == []


@pytest.mark.parametrize("protocol", range(6))
def test_standard_library_data(tmp_path: Path, protocol: int) -> None:
    value = {
        "ordered": collections.OrderedDict(b=2, a=1),
        "default": collections.defaultdict(list, {"k": [1]}),
        "counter": collections.Counter("abracadabra"),
        "deque": collections.deque([1, 2]),
        "sets": (set([1, 2]), frozenset({3})),
        "bytes": (b"\x00\x01", bytearray(b"ab")),
        "numbers": (2**100, 1.5, complex(1, 2), decimal.Decimal("1.10"), fractions.Fraction(1, 3)),
        "ranges": (range(3), slice(1, 5, 2)),
        "time": (datetime.datetime(2024, 1, 2, 3, 4), datetime.date(2024, 1, 2)),
        "delta": datetime.timedelta(days=1),
        "id": uuid.UUID(int=1),
    }

    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(value, protocol=protocol))

    assert scan_file(path) == []
