"""A tool-calling agent (MLflow's ResponsesAgent) on the OpenAI SDK: it offers the LLM at LLM_ENDPOINT an
`add` tool, runs the call the LLM asks for, and answers with the LLM's last word. Streams too."""

import json
import os

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "the sum of two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}


class Agent(ResponsesAgent):
    def _answer(self, request):
        from openai import OpenAI

        client = OpenAI(base_url=os.environ["LLM_ENDPOINT"], api_key=os.environ["OPENAI_API_KEY"], max_retries=0)
        messages = [{"role": item.role, "content": item.content} for item in request.input]
        for _ in range(4):
            reply = client.chat.completions.create(model="stub", messages=messages, tools=[ADD]).choices[0].message
            if not reply.tool_calls:
                return reply.content
            messages.append(reply.model_dump(exclude_none=True))
            for call in reply.tool_calls:
                arguments = json.loads(call.function.arguments)
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": str(arguments["a"] + arguments["b"])}
                )
        raise RuntimeError("the LLM kept asking for tools")

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        text = self._answer(request)
        return ResponsesAgentResponse(output=[self.create_text_output_item(text=text, id="answer")])

    def predict_stream(self, request: ResponsesAgentRequest):
        text = self._answer(request)
        for index, word in enumerate(text.split(" ")):
            yield ResponsesAgentStreamEvent(
                **self.create_text_delta(delta=("" if index == 0 else " ") + word, item_id="answer")
            )
        yield ResponsesAgentStreamEvent(
            type="response.output_item.done", item=self.create_text_output_item(text=text, id="answer")
        )


mlflow.models.set_model(Agent())
