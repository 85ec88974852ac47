"""Queue lanes: a cap on waiting events per concurrency group instead of one cap for the whole app.

Gradio's ``queue(max_size=...)`` counts the waiting events of every event together, so a flood of
one slow event (70 ``/explain`` calls) fills the queue and everyone else, raters submitting scores
included, gets "queue full" (HTTP 503). ``separate_lanes`` gives each concurrency group its own
waiting-room cap (``lane_sizes`` by ``concurrency_id``, ``default_size`` for the rest): a full
Predict lane refuses more Predict calls while the rating lane keeps accepting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gradio as gr
from gradio import route_utils

#: The concurrency group of every rating and annotation event (Annotate tab).
RATING_LANE = "rating"


def separate_lanes(demo: gr.Blocks, default_size: int, lane_sizes: Mapping[str, int]) -> None:
    """After ``demo.queue(...)``: cap waiting events per concurrency group (not in total)."""
    queue = demo._queue
    queue.max_size = None  # the caps below replace the app-wide one
    push = queue.push

    async def push_to_lane(body: Any, request: Any, username: str | None) -> Any:
        if body.fn_index is not None:
            fn = route_utils.get_fn(queue.blocks, None, body)
            lane = queue.event_queue_per_concurrency_id.get(fn.concurrency_id)
            size = lane_sizes.get(fn.concurrency_id, default_size)
            if lane is not None and len(lane.queue) >= size:
                return False, f"Queue is full for this action ({size} waiting); try again shortly.", "queue_full"
        return await push(body, request, username)

    # Gradio has no hook for admitting an event: replace the queue's push on this instance.
    queue.push = push_to_lane  # type: ignore[method-assign]
