"""What a run leaves in its output directory, each file named once: the contract CI jobs and tools read."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path("mlflow-validator-report")
JUNIT_FILE = "junit.xml"  # the JUnit report (--junit-xml puts it elsewhere)
REPORT_FILE = "report.json"  # the verdict, the stages, then every result record
VERDICT_FILE = "verdict.env"  # MLFLOW_VALIDATOR_VERDICT, _EXIT_CODE, _IMAGE_DIGEST for a downstream job
SUMMARY_FILE = "summary.md"  # the run as Markdown: what did not pass first
RESULTS_FILE = "results.json"  # several models: each one's verdict, exit code and report paths
IMAGE_RECORD = "image.json"  # the kept image's tag, ID and digest
LOG_FILE = "mlflow-validator.log"  # the run's log, and a crash's traceback
LOCK_FILE = "requirements.lock.txt"  # the lock every stage installs
ANSWERS_DIR = "answers"  # each stage's answers, a directory per stage
