"""The Bento serves models with the libraries they were trained with: its pins are the
training environment's versions (what every registered model's requirements.txt pins)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import yaml

from pricebot_training.candidates import discover
from pricebot_training.tracking import BASE_REQUIREMENTS

BENTOFILE = Path(__file__).parents[2] / "pricebot_service" / "bentofile.yaml"
SERVED_WITHOUT_EXTRA = {"catboost"}  # an extra of its own (docs/training.md)


def pins() -> dict[str, str]:
    packages = yaml.safe_load(BENTOFILE.read_text())["python"]["packages"]
    return {p.split("==")[0]: p.split("==")[1] for p in packages if "==" in p}


def test_every_model_library_is_pinned_in_the_bento_at_the_trained_version() -> None:
    served = [p for p in discover() if p.name not in SERVED_WITHOUT_EXTRA]
    libraries = {r for p in served for r in p.requirements} | {"numpy", "pandas", "mlflow"}
    bento = pins()

    assert {lib: bento.get(lib) for lib in libraries} == {lib: version(lib) for lib in libraries}
    assert set(BASE_REQUIREMENTS) - {"cloudpickle"} <= set(bento)
