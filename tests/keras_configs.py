"""Keras model configs as Keras 2 and Keras 3 write them, for the format scanners' tests.

Written by hand in the shape the real ``model.to_json()`` / ``config.json`` have (Keras itself
needs a backend this machine does not have); the hostile ones follow the public techniques:
Lambda bytecode (CVE-2024-3660), a Lambda calling a Keras function that turns safe mode off
(CVE-2025-9906), a custom module (CVE-2025-1550).
"""

from __future__ import annotations

import base64
import marshal
from typing import Any


def _keras3(module: str, class_name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": class_name,
        "config": config,
        "registered_name": None,
        **extra,
    }


def _dense(name: str, units: int) -> dict[str, Any]:
    return _keras3(
        "keras.layers",
        "Dense",
        {
            "name": name,
            "trainable": True,
            "dtype": _keras3("keras", "DTypePolicy", {"name": "float32"}),
            "units": units,
            "activation": "relu",
            "use_bias": True,
            "kernel_initializer": _keras3("keras.initializers", "GlorotUniform", {"seed": None}),
            "bias_initializer": _keras3("keras.initializers", "Zeros", {}),
            "kernel_regularizer": None,
        },
        build_config={"input_shape": [None, 8]},
    )


def keras3_model(*layers: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` of a ``.keras`` archive: a Sequential model with these layers."""
    body = [
        _keras3(
            "keras.layers",
            "InputLayer",
            {"batch_shape": [None, 8], "dtype": "float32", "sparse": False, "name": "input"},
        ),
        _dense("dense", 16),
        *layers,
        _dense("dense_1", 1),
    ]
    return _keras3(
        "keras",
        "Sequential",
        {"name": "sequential", "trainable": True, "layers": body},
        registered_name="Sequential",
        build_config={"input_shape": [None, 8]},
        compile_config={
            "optimizer": _keras3(
                "keras.optimizers", "Adam", {"name": "adam", "learning_rate": 0.001}
            ),
            "loss": _keras3("keras.losses", "MeanSquaredError", {"name": "mean_squared_error"}),
            "metrics": ["mae"],
        },
    )


def lambda_bytecode() -> str:
    """What Keras writes for a Python lambda: its marshalled code, base64 (never loaded here)."""
    return base64.b64encode(marshal.dumps((lambda x: x * 2).__code__)).decode()


def keras3_lambda_layer() -> dict[str, Any]:
    return _keras3(
        "keras.layers",
        "Lambda",
        {
            "name": "lambda",
            "function": {
                "class_name": "__lambda__",
                "config": {"code": lambda_bytecode(), "defaults": None, "closure": None},
            },
            "arguments": {},
        },
    )


def keras3_function_lambda(module: str, function: str) -> dict[str, Any]:
    """A Lambda whose function is a reference to ``module.function`` (the safe-mode bypasses)."""
    return _keras3(
        "keras.layers",
        "Lambda",
        {
            "name": "unsafe",
            "function": {
                "module": module,
                "class_name": "function",
                "config": function,
                "registered_name": "function",
            },
            "arguments": {},
        },
    )


def keras2_model(*layers: dict[str, Any]) -> dict[str, Any]:
    """An HDF5 ``model_config`` (Keras 2 ``model.to_json()``): no ``module`` keys."""
    return {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_input_shape": [None, 8], "dtype": "float32"},
                },
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense",
                        "units": 4,
                        "activation": "relu",
                        "kernel_initializer": {"class_name": "GlorotUniform", "config": {}},
                    },
                },
                *layers,
            ],
        },
        "keras_version": "2.15.0",
        "backend": "tensorflow",
    }


def keras2_lambda_layer() -> dict[str, Any]:
    return {
        "class_name": "Lambda",
        "config": {
            "name": "lambda",
            "trainable": True,
            "function": [lambda_bytecode(), None, None],
            "function_type": "lambda",
            "module": "__main__",
            "output_shape": None,
            "output_shape_type": "raw",
            "arguments": {},
        },
    }
