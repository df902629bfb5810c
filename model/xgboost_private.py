"""XGBoost's private C-API predict path, used only on the XGBoost versions it was verified against.

`InplacePredictor` calls XGBoost's C entry point `XGBoosterPredictFromDense` through
`xgboost.core._LIB`, `_check_call`, `make_jcargs` and a per-thread `_ProxyDMatrix`, none of them
XGBoost's public API. On any other XGBoost version (or when one of those names is gone) it calls
the public `Booster.inplace_predict`, which returns the same numbers
(tests/unit/model/test_xgboost_private.py); what that costs is measured by
benchmarks/public_paths.py.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import xgboost as xgb

from clv.core.dependencies import dependency_version, said_once, unverified

VERIFIED = ("3.2.0",)
"""XGBoost versions whose private predict path was checked against `Booster.inplace_predict`."""


def installed_version() -> str | None:
    """The installed XGBoost's version, None when unknown."""
    return dependency_version("xgboost")


def private_unavailable() -> str | None:
    """None when XGBoost's private predict path may be used, else why not (logged once)."""
    return unverified(
        "xgboost", installed_version(), VERIFIED, public="inplace_predict", logger=__name__
    )


class InplacePredictor:
    """`Booster.inplace_predict` on a dense float32 matrix without its per-call setup.

    For one row, `inplace_predict` costs ~80 us whatever the model (measured with a one-tree
    booster, XGBoost 3.2): ~35 us of Python (input type probing, JSON arguments) and, in C, a
    new proxy DMatrix per call whose `Context` reads the cgroup CPU quota files (10 syscalls).
    This calls the same C entry point, `XGBoosterPredictFromDense`, with the JSON arguments
    built once and a proxy DMatrix kept per thread (a proxy is not thread-safe; inplace
    prediction on a booster is), ~20 us a call: the numbers are XGBoost's own, bit for bit.

    `native` says which path runs: False with `public=True`, off the verified XGBoost versions
    (`reason` says why) or when XGBoost's private helpers are not there.
    """

    def __init__(self, booster: xgb.Booster, *, margin: bool, public: bool = False) -> None:
        self.booster = booster
        self.margin = margin
        self.n_features = booster.num_features()
        self._local = threading.local()
        self.reason = "public path asked for" if public else private_unavailable()
        self.native = False
        if self.reason is not None:
            return
        try:
            from xgboost.core import _LIB, _check_call, make_jcargs
        except ImportError as exc:  # the version matches, the names do not: public path
            self.reason = said_once(f"{exc}: inplace_predict", logger=__name__)
            return
        self._lib = _LIB
        self._check = _check_call
        self._ulong = ctypes.c_uint64  # XGBoost's bst_ulong
        self._args = make_jcargs(
            type=1 if margin else 0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=float("nan"),
            strict_shape=False,
            cache_id=0,
        )
        self.native = True

    def _proxy(self) -> ctypes.c_void_p:
        proxy: ctypes.c_void_p | None = getattr(self._local, "proxy", None)
        if proxy is None:
            from xgboost.core import _ProxyDMatrix

            self._local.owner = _ProxyDMatrix()  # freed with the thread's locals
            proxy = self._local.proxy = self._local.owner.handle
        return proxy

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.native:
            kind = "margin" if self.margin else "value"
            return np.asarray(self.booster.inplace_predict(x, predict_type=kind), np.float64)
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        n, m = x.shape
        if n == 0:
            return np.empty(0, dtype=np.float64)
        if m != self.n_features:
            raise ValueError(f"Feature shape mismatch, expected: {self.n_features}, got {m}")
        data = x.__array_interface__["data"][0]
        interface = (
            f'{{"data":[{data},true],"shape":[{n},{m}],"strides":null,"typestr":"<f4","version":3}}'
        ).encode()
        shape = ctypes.POINTER(self._ulong)()
        dims = self._ulong()
        preds = ctypes.POINTER(ctypes.c_float)()
        self._check(
            self._lib.XGBoosterPredictFromDense(
                self.booster.handle,
                interface,
                self._args,
                self._proxy(),
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        size = 1
        for i in range(dims.value):
            size *= int(shape[i])
        out = np.ctypeslib.as_array(preds, shape=(size,)).astype(np.float64)
        return out if dims.value == 1 else out.reshape([int(shape[i]) for i in range(dims.value)])
