"""The model session's steps of a synthetic call log (``engine/synthetic.py``) that are not the
conversation's speech: tool calls, a lost and re-seeded session, an error from the model. Kept apart
so each module stays one readable script."""

from __future__ import annotations

from typing import Any, Self

import msgspec

from callbridge.engine.conversation import ConversationMemory
from callbridge.engine.events import (
    ModelConnected,
    ModelDisconnected,
    ModelErrorReported,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.synthetic_model import ModelEventLog
from callbridge.engine.tools import error_output

_encode = msgspec.json.Encoder()


class ModelSessionLog(ModelEventLog):
    """Tool calls, reconnects and model errors, on the log's clock (``wait``)."""

    session_config: dict[str, Any]

    def tool_call(
        self,
        name: str,
        arguments: dict[str, Any],
        output: Any,
        *,
        duration_ms: int = 300,
        failed: bool = False,
        handler: str = "backend",
    ) -> Self:
        response_id, item_id, tool_call_id = self._id("resp"), self._id("item"), self._id("call")
        args = _encode.encode(arguments).decode()
        self._response_started(response_id)
        item = {"id": item_id, "type": "function_call", "call_id": tool_call_id, "name": name, "arguments": ""}
        previous = self._item_added(response_id, item)
        self.wait(200)
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "call_id": tool_call_id}
        third = max(1, -(-len(args) // 3))
        for start in range(0, len(args), third):
            self._received("response.function_call_arguments.delta", **ids, delta=args[start : start + third])
        self._received(
            "response.function_call_arguments.done",
            response_id=response_id,
            item_id=item_id,
            output_index=0,
            call_id=tool_call_id,
            name=name,
            arguments=args,
        )
        self._add(
            ToolCallRequested(
                call_id=self.call_id,
                at=self._at(),
                tool_call_id=tool_call_id,
                name=name,
                arguments=args,
                response_id=response_id,
                item_id=item_id,
                handler=handler,
            )
        )
        done_item = {**item, "status": "completed", "arguments": args}
        self._received("response.output_item.done", response_id=response_id, output_index=0, item=done_item)
        self._conversation_item("conversation.item.done", done_item, previous)
        self._response_done(response_id, "completed", 0, len(args))
        self.wait(duration_ms)
        text = output if isinstance(output, str) else _encode.encode(output).decode()
        if failed:  # the model is told the error as the engine tells it: {"error": message}
            error, text = text, error_output(text)
            self._add(
                ToolCallFailed(
                    call_id=self.call_id,
                    at=self._at(),
                    tool_call_id=tool_call_id,
                    name=name,
                    error=error,
                    output=text,
                    duration_ms=float(duration_ms),
                )
            )
        else:
            self._add(
                ToolCallCompleted(
                    call_id=self.call_id,
                    at=self._at(),
                    tool_call_id=tool_call_id,
                    name=name,
                    output=text,
                    duration_ms=float(duration_ms),
                    source=handler,
                )
            )
        output_item = {"type": "function_call_output", "call_id": tool_call_id, "output": text}
        self._sent("conversation.item.create", item=output_item)
        self._sent("response.create")
        self._created(output_item)  # after the function call
        return self

    def model_drops(self, code: int = 1006, downtime_ms: int = 400) -> Self:
        """The model's socket is lost; after ``downtime_ms`` a new session is configured and told
        the conversation so far, as the engine's ``ConversationMemory`` retells it from this log,
        and the model adds each item to its new (empty) conversation."""
        self._add(ModelDisconnected(call_id=self.call_id, at=self._at(), code=code, reason="", error="connection lost"))
        self.wait(downtime_ms)
        memory = ConversationMemory()
        for event in self.events:
            memory.apply(event)
        seeds = memory.seed_items()
        self._sent("session.update", session={"type": "realtime", **self.session_config})
        for seed in seeds:
            self._sent("conversation.item.create", item=seed)
        self._add(
            ModelConnected(
                call_id=self.call_id, at=self._at(), url="ws://sim/v1/realtime", attempt=1, seeded_items=len(seeds)
            )
        )
        self._received("session.created", session={"id": self._id("sess"), "type": "realtime"})
        self._received("session.updated", session={"id": "sess", "type": "realtime"})
        self._last_item = None
        for seed in seeds:
            self._created(seed)
        return self

    def model_error(self, code: str, message: str) -> Self:
        self._received("error", error={"type": "invalid_request_error", "code": code, "message": message})
        self._add(
            ModelErrorReported(
                call_id=self.call_id, at=self._at(), code=code, message=message, error_type="invalid_request_error"
            )
        )
        return self
