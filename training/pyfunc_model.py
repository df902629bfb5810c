"""MLflow "models from code" entry point: executed by MLflow when it loads the logged model.

Not imported by clv itself: `pyfunc.load_model` and `mlflow models serve` run this file, which
declares the pyfunc wrapper around the `bundle` artifact (see `clv.training.mlflow_io.ClvPyfunc`).
"""

from __future__ import annotations

from mlflow.models import set_model

from clv.training.mlflow_io import ClvPyfunc

set_model(ClvPyfunc())
