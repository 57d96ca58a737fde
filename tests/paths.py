"""Files the tests read."""

from pathlib import Path

# The JUnit schema Jenkins' xUnit plugin, GitLab and the GitHub report actions read (MIT, from
# jenkinsci/xunit-plugin, header kept), vendored so the tests need nothing outside this repository.
JUNIT_SCHEMA = Path(__file__).parent / "schemas" / "junit-10.xsd"
# The repository: the component, the examples and the Dockerfile the tests use as a user would.
ROOT = Path(__file__).parents[1]
