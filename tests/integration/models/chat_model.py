"""A chat model (MLflow's ChatModel) that asks an OpenAI-compatible endpoint, LLM_ENDPOINT, with the key in
OPENAI_API_KEY, and prints that key (as a careless model would: it must reach no output). model_config:
{"calls": n} asks the LLM n times per prediction (a loop); {"also": url} also fetches url (a second host
nobody declared), whether or not that works."""

import os

import mlflow
import requests
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatCompletionResponse


class Chat(ChatModel):
    def load_context(self, context):
        self.config = context.model_config or {}
        print(f"calling {os.environ['LLM_ENDPOINT']} with the key {os.environ['OPENAI_API_KEY']}", flush=True)

    def predict(self, context, messages, params):
        if "also" in self.config:
            try:
                requests.get(self.config["also"], timeout=10)
            except requests.RequestException as exc:
                print(f"{self.config['also']}: {exc}", flush=True)
        with requests.Session() as session:
            for _ in range(self.config.get("calls", 1)):
                answer = session.post(
                    f"{os.environ['LLM_ENDPOINT']}/chat/completions",
                    headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"},
                    json={"model": "stub", "messages": [message.to_dict() for message in messages]},
                    timeout=30,
                )
                answer.raise_for_status()
        return ChatCompletionResponse.from_dict(answer.json())


mlflow.models.set_model(Chat())
