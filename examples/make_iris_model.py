"""Regenerate examples/iris-classifier: a small sklearn model logged the way MLflow logs it.

python examples/make_iris_model.py
"""

from importlib.metadata import version
from pathlib import Path
from shutil import rmtree

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

DESTINATION = Path(__file__).with_name("iris-classifier")
PINNED = ["mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops"]

features, target = load_iris(return_X_y=True, as_frame=True)
classifier = LogisticRegression(max_iter=300).fit(features, target)
rmtree(DESTINATION, ignore_errors=True)
mlflow.sklearn.save_model(
    classifier,
    DESTINATION,
    input_example=features.head(3),
    pip_requirements=[f"{name}=={version(name)}" for name in PINNED],
)
print(f"saved {DESTINATION}")
