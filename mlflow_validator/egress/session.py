"""One stage's declared egress: its proxy, what the model is told, and the `egress` check over what the
proxy saw."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow_validator.egress.destinations import Destination
from mlflow_validator.egress.proxy import Connection, EgressProxy, Tally, egress_proxy
from mlflow_validator.egress.tunnel import door_command, door_in_container, proxy_env
from mlflow_validator.errors import InfrastructureError
from mlflow_validator.results import Outcome, Status, passed, skipped
from mlflow_validator.stages.docker.engine import Docker

SOCKET_NAME = "proxy.sock"
MAX_SOCKET_PATH = 107
SHOWN_CONNECTIONS = 50  # in the check's details; the count says how many more


@dataclass(frozen=True)
class Egress:
    proxy: EgressProxy
    socket: Path  # a short path (a Unix socket's is at most 107 bytes), shown to the cage read-only

    @property
    def directory(self) -> Path:
        return self.socket.parent

    @staticmethod
    def env() -> dict[str, str]:
        return proxy_env()

    def behind_door(self, command: list[str | Path]) -> list[str | Path]:
        return door_command(self.socket, command)

    def in_container(self, docker: Docker, container: str) -> AbstractContextManager[None]:
        return door_in_container(docker, container, self.socket)

    def give_to(self, uid: int) -> None:
        """The directory is the cage user's alone to enter (the validator, root, enters anything)."""
        os.chown(self.directory, uid, uid)


@contextmanager
def opened_egress(destinations: Sequence[Destination]) -> Iterator[Egress]:
    directory = Path(tempfile.mkdtemp(prefix="mlflow-validator-egress-"))
    if len(str(directory / SOCKET_NAME)) > MAX_SOCKET_PATH:  # a long TMPDIR
        directory.rmdir()
        directory = Path(tempfile.mkdtemp(prefix="mlflow-validator-egress-", dir="/tmp"))
    try:
        with egress_proxy(destinations, directory / SOCKET_NAME) as proxy:
            yield Egress(proxy, directory / SOCKET_NAME)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def refusal_message(connection: Connection) -> str:
    if connection.refusal == "not in sandbox.egress":
        return (
            f"the model reached for {connection.destination}, which sandbox.egress does not allow: if it needs it, "
            f"add `- {connection.destination}` under `sandbox: {{egress: [...]}}` in mlflow-validator.yaml"
        )
    return f"the model reached for {connection.destination}, refused: {connection.refusal}"


def first_refusal(egress: Egress | None) -> str:
    """What to say first when the model failed: the destination it was refused, if any. A declared destination
    that could not be reached is not the model's fault: the run cannot validate (exit 2)."""
    seen = egress.proxy.snapshot() if egress else Tally()
    if seen.refused:
        return refusal_message(seen.refused[0])
    if seen.unreachable:
        failed = seen.unreachable[0]
        raise InfrastructureError(
            f"the model's declared destination {failed.destination} could not be reached ({failed.refusal})",
            "check that the endpoint is up and reachable from the runner (and from the Docker engine's host)",
        )
    return ""


@dataclass(frozen=True)
class Cost:
    """What the proxy counted while the validator asked for `predictions` answers."""

    what: str  # a request's name, or "the plan"
    calls: int
    predictions: int = 1
    bytes_up: int = 0
    bytes_down: int = 0

    @staticmethod
    def between(what: str, before: Tally, after: Tally, predictions: int = 1) -> Cost:
        return Cost(
            what,
            after.calls - before.calls,
            predictions,
            after.bytes_up - before.bytes_up,
            after.bytes_down - before.bytes_down,
        )

    def __str__(self) -> str:
        return (
            f"{self.what}: {self.calls} call(s), {self.bytes_up} bytes up, {self.bytes_down} down, for "
            f"{self.predictions} prediction(s)"
        )


def refusal_first(outcome: Outcome, egress: Egress | None) -> Outcome:
    """A model whose call was refused fails because of it: say which destination, not what its client raised."""
    if outcome.status is Status.FAILED and (refused := first_refusal(egress)):
        return replace(outcome, message=f"{refused} ({outcome.message})")
    return outcome


def check_egress(egress: Egress | None, costs: Sequence[Cost], budget: int | None) -> Outcome:
    """No refused connection, and no cost over `budget` calls per prediction."""
    if egress is None:
        return skipped("no sandbox.egress: the model reaches nothing")
    seen = egress.proxy.snapshot()
    details = (
        _table(seen.connections, seen.opened)
        + "".join(
            f"\nrefused: {connection.destination}: {connection.refusal}"
            for connection in seen.refused[:SHOWN_CONNECTIONS]
        )
        + "".join(f"\n{cost}" for cost in costs)
    )
    properties = {
        "egress.connections": str(seen.opened),
        "egress.refused": str(len(seen.refused)),
        "egress.calls": str(seen.calls),
        "egress.bytes_up": str(seen.bytes_up),
        "egress.bytes_down": str(seen.bytes_down),
    }
    if seen.refused:
        others = f" (and {len(seen.refused) - 1} more refused)" if len(seen.refused) > 1 else ""
        return Outcome(Status.FAILED, refusal_message(seen.refused[0]) + others, details, properties)
    unreachable = f"; {len(seen.unreachable)} could not connect" if seen.unreachable else ""
    over = [cost for cost in costs if budget is not None and cost.calls > budget * cost.predictions]
    if over:
        worst = max(over, key=lambda cost: cost.calls / cost.predictions)
        return Outcome(
            Status.FAILED,
            f"{worst.what} cost {worst.calls} upstream call(s) for {worst.predictions} prediction(s), more than "
            f"budgets.max_upstream_calls ({budget}) each: does the model call its LLM in a loop?",
            details,
            properties,
        )
    destinations = sorted({connection.destination for connection in seen.connections})
    most = max((cost.calls / cost.predictions for cost in costs), default=0.0)
    return passed(
        f"{seen.calls} upstream call(s), at most {most:.1f} per prediction, over {seen.opened} connection(s) to "
        f"{', '.join(destinations) or 'nothing'}: {seen.bytes_up} bytes up, {seen.bytes_down} down; nothing "
        f"refused{unreachable}",
        details,
        properties,
    )


def _table(connections: Sequence[Connection], opened: int) -> str:
    lines = ["opened_s  destination  allowed  calls  bytes_up  bytes_down  seconds  refusal"]
    lines += [
        f"{c.opened_s:.3f}  {c.destination}  {'yes' if c.allowed else 'no'}  {c.calls}  {c.bytes_up}  "
        f"{c.bytes_down}  {c.seconds:.3f}  {c.refusal}"
        for c in connections[:SHOWN_CONNECTIONS]
    ]
    if opened > min(len(connections), SHOWN_CONNECTIONS):
        lines.append(f"… and {opened - min(len(connections), SHOWN_CONNECTIONS)} more")
    return "\n".join(lines)
