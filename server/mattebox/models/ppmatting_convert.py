"""PaddleSeg PP-Matting checkpoints (.pdparams) -> state dicts of :class:`mattebox.models.ppmatting.PPMatting`.

A .pdparams file is ``paddle.save`` of a state dict: a pickle of a dict name -> numpy array (plus, when Tensors
were saved, a ``StructuredToParameterName@@`` dict of internal names). It is read with :class:`ArrayUnpickler`,
which resolves only the globals numpy needs to rebuild arrays; anything else in the pickle (os.system, builtins,
paddle classes) is refused before it can run.

Names are checked one to one against ``ppmatting_keys.json``, the key table of PaddleSeg's PPMatting with
HRNet_W18 and HRNet_W48 (every name and shape, written by bench/support/make_ppmatting_fixture.py from PaddleSeg's
source). The torch model uses PaddleSeg's module names, so the mapping is: BatchNorm ``_mean``/``_variance`` ->
``running_mean``/``running_var`` (plus torch's ``num_batches_tracked`` = 0), 2-D (Linear) weights transposed from
Paddle's (in, out) to torch's (out, in), everything else as is.

Torch is imported only by :func:`convert_state` / :func:`convert_pdparams`.
"""
from __future__ import annotations

import importlib
import json
import pickle
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional

import numpy as np

KEYS_JSON = Path(__file__).with_name("ppmatting_keys.json")
#: the name table paddle.save adds when saving Tensors; not a weight
NAME_MAP_KEY = "StructuredToParameterName@@"
#: the globals a pickle of numpy arrays may name (numpy 1.x and 2.x module paths); nothing else is resolved
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"): a pure function
}


class PdparamsError(ValueError):
    """A .pdparams file that is not a PaddleSeg PP-Matting checkpoint (or not a safe pickle of arrays)."""


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` (numpy array reconstruction, OrderedDict)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise PdparamsError(f"refusing to load {module}.{name}: a .pdparams file may only contain numpy arrays")
        if module in ("collections", "_codecs"):
            return super().find_class(module, name)
        real = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module.replace(
            "numpy._core", "numpy.core")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return getattr(importlib.import_module(real), name)


def read_pdparams(path) -> Dict[str, np.ndarray]:
    """The arrays of a .pdparams file, name -> numpy array (the name map dropped). Raises PdparamsError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = ArrayUnpickler(handle).load()
    except PdparamsError:
        raise
    except OSError as exc:
        raise PdparamsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # truncated or not a pickle at all
        raise PdparamsError(f"{path}: not a .pdparams pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise PdparamsError(f"{path}: expected a dict of arrays, found a {type(data).__name__}")
    names = data.pop(NAME_MAP_KEY, None)
    if names is not None and not isinstance(names, dict):
        raise PdparamsError(f"{path}: {NAME_MAP_KEY} should be a dict, found a {type(names).__name__}")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise PdparamsError(f"{path}: entry {key!r} is a {type(value).__name__}"
                                f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}, "
                                "expected a float numpy array")
    return data


@lru_cache(maxsize=1)
def key_table() -> dict:
    """ppmatting_keys.json: {"variants": [...], "parameters": {...}, "shapes": {variant: {name: shape}}}."""
    raw = json.loads(KEYS_JSON.read_text())
    shapes = {variant: {row[0]: tuple(row[1 + i]) for row in raw["keys"]}
              for i, variant in enumerate(raw["variants"])}
    return {"variants": raw["variants"], "parameters": raw["parameters"], "source": raw["source"], "shapes": shapes}


def torch_name(paddle_name: str) -> str:
    """PaddleSeg state-dict name -> the torch model's (BatchNorm statistics renamed, all else identical)."""
    if paddle_name.endswith("._mean"):
        return paddle_name[:-len("_mean")] + "running_mean"
    if paddle_name.endswith("._variance"):
        return paddle_name[:-len("_variance")] + "running_var"
    return paddle_name


def detect_variant(arrays: Dict[str, np.ndarray]) -> Optional[str]:
    """"hrnet_w18" / "hrnet_w48" when every shape matches that variant's table, else None (other widths)."""
    for variant, shapes in key_table()["shapes"].items():
        if all(tuple(arrays[name].shape) == shape for name, shape in shapes.items()):
            return variant
    return None


def check_names(arrays: Dict[str, np.ndarray], variant: Optional[str] = None, what: str = "checkpoint") -> None:
    """Every name of the key table present and nothing else; with ``variant`` every shape equal to its table's."""
    table = key_table()
    expected = table["shapes"][table["variants"][0]]
    missing = [name for name in expected if name not in arrays]
    unexpected = [name for name in arrays if name not in expected]
    if missing or unexpected:
        raise PdparamsError(f"{what} is not PaddleSeg's PP-Matting (HRNet): {len(missing)} missing names "
                            f"{missing[:3]}, {len(unexpected)} unexpected names {unexpected[:3]}")
    if variant is not None:
        if variant not in table["shapes"]:
            raise PdparamsError(f"variant must be one of {table['variants']}, got {variant!r}")
        wrong = [(n, tuple(arrays[n].shape), s) for n, s in table["shapes"][variant].items()
                 if tuple(arrays[n].shape) != s]
        if wrong:
            name, got, want = wrong[0]
            raise PdparamsError(f"{what} is not PP-Matting {variant}: {len(wrong)} shapes differ, e.g. {name} is "
                                f"{got}, expected {want} (detected: {detect_variant(arrays) or 'other widths'})")


def to_torch_array(name: str, array: np.ndarray) -> np.ndarray:
    """One Paddle array in torch's layout, float32: a 2-D weight is a Linear's, stored (in, out) -> (out, in)."""
    value = array.T if array.ndim == 2 and name.endswith(".weight") else array
    return np.ascontiguousarray(value, dtype=np.float32)


def convert_state(arrays: Dict[str, np.ndarray], variant: Optional[str] = None, what: str = "checkpoint"):
    """Paddle arrays -> torch state dict (float32 tensors; ``num_batches_tracked`` = 0 for every BatchNorm)."""
    import torch

    check_names(arrays, variant, what)
    state = {}
    for name, array in arrays.items():
        state[torch_name(name)] = torch.from_numpy(to_torch_array(name, array))
        if name.endswith("._mean"):
            state[name[:-len("_mean")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def convert_pdparams(path, variant: Optional[str] = None) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Read a PaddleSeg PP-Matting .pdparams safely and return the torch state dict for
    ``PPMatting(hrnet_width=18 or 48)``. ``variant`` ("hrnet_w18" / "hrnet_w48") also checks every shape; without
    it the names are checked and shapes are left to ``load_state_dict`` (reduced-width test models)."""
    return convert_state(read_pdparams(path), variant, what=str(path))


def torch_config(variant: str) -> dict:
    """PPMatting constructor arguments of a PaddleSeg variant ("hrnet_w18" / "hrnet_w48")."""
    widths = {"hrnet_w18": 18, "hrnet_w48": 48}
    if variant not in widths:
        raise PdparamsError(f"variant must be one of {sorted(widths)}, got {variant!r}")
    return {"hrnet_width": widths[variant]}
