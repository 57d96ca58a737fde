"""The chat contract of GenAI models: a model whose task (MLmodel's `metadata.task`) is one of MLflow's chat
or responses APIs (a ChatModel, a ResponsesAgent, a ChatAgent, or any pyfunc logged with their task) is
asked as their clients ask it, and what it answers, whole or streamed, is judged by MLflow's own types for
that API rather than by `{"predictions": …}`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_validator.expectations.contract import MAX_PROBLEMS
from mlflow_validator.model.mlmodel import MLmodel

ROLES = ("system", "user", "assistant")
ONE_TURN = ({"role": "user", "content": "What does a model registry hold?"},)
CONVERSATION = (
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "What does a model registry hold?"},
    {"role": "assistant", "content": "Versions of models, with their stages and aliases."},
    {"role": "user", "content": "And what is promoted?"},
)


@dataclass(frozen=True)
class ChatContract:
    task: str
    api: str  # how messages name it
    key: str  # what a request's turns are under: "messages", "input"
    params: Mapping[str, Any]  # generation settings its requests may carry
    response_type: str  # MLflow's type of an answer, "module:Class"
    chunk_type: str  # of a streamed chunk

    @property
    def response_name(self) -> str:
        return _name(self.response_type)

    def answer_problems(self, answer: Any) -> list[str]:
        """Empty when `answer` (the parsed body of a 200) is a valid response of the API."""
        problem = _invalid(self.response_type, answer)
        return [f"the answer is not a valid {_name(self.response_type)}: {problem}"] if problem else []

    def chunk_problems(self, chunks: Sequence[Any]) -> list[str]:
        problems = [
            f"chunk {index} is not a valid {_name(self.chunk_type)}: {problem}"
            for index, chunk in enumerate(chunks)
            if (problem := _invalid(self.chunk_type, chunk))
        ]
        return problems[:MAX_PROBLEMS]

    def payloads(self) -> Any:
        """A Hypothesis strategy for valid requests: a conversation of one to four turns that ends with the
        user's, each some text, and some of the generation settings."""
        from hypothesis import strategies as st

        text = st.text(min_size=1, max_size=200)
        turn = st.builds(lambda role, content: {"role": role, "content": content}, st.sampled_from(ROLES), text)
        last = st.builds(lambda content: {"role": "user", "content": content}, text)
        conversation = st.builds(lambda earlier, final: [*earlier, final], st.lists(turn, max_size=3), last)
        settings = st.fixed_dictionaries({}, optional={name: _setting(name) for name in self.params})
        return st.builds(lambda turns, chosen: {self.key: turns, **chosen}, conversation, settings)


def _setting(name: str) -> Any:
    from hypothesis import strategies as st

    if name == "temperature":
        return st.floats(0.0, 2.0)
    return st.integers(1, 256)  # max_tokens, max_output_tokens


CHAT_COMPLETIONS = (
    "chat completions",
    "messages",
    {"temperature": 0.0, "max_tokens": 64},
    "mlflow.types.llm:ChatCompletionResponse",
    "mlflow.types.llm:ChatCompletionChunk",
)
CONTRACTS = {
    contract.task: contract
    for contract in (
        ChatContract("agent/v1/chat", *CHAT_COMPLETIONS),  # ChatModel
        ChatContract("llm/v1/chat", *CHAT_COMPLETIONS),  # a pyfunc or flavor logged with the chat task
        ChatContract(
            "agent/v2/chat", "ChatAgent", "messages", {},
            "mlflow.types.agent:ChatAgentResponse", "mlflow.types.agent:ChatAgentChunk",
        ),
        ChatContract(
            "agent/v1/responses", "Responses", "input", {"temperature": 0.0, "max_output_tokens": 64},
            "mlflow.types.responses:ResponsesAgentResponse", "mlflow.types.responses:ResponsesAgentStreamEvent",
        ),
    )
}  # fmt: skip


def chat_contract(mlmodel: MLmodel) -> ChatContract | None:
    return CONTRACTS.get(mlmodel.task)


def _name(type_path: str) -> str:
    return type_path.rsplit(":", 1)[1]


def _invalid(type_path: str, value: Any) -> str:
    """Why MLflow's own type refuses `value` (hostile JSON), in one line; empty when it takes it."""
    module, name = type_path.split(":")
    kind = getattr(importlib.import_module(module), name)
    try:
        if hasattr(kind, "model_validate"):  # pydantic: the responses and ChatAgent types
            kind.model_validate(value)
        elif isinstance(value, dict):  # MLflow's dataclasses: the chat completions types
            kind.from_dict(value)
        else:
            return f"a {type(value).__name__}, not an object"
    except Exception as exc:  # whatever the type raises is its refusal
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return " ".join(lines[:3])[:300] or type(exc).__name__
    return ""
