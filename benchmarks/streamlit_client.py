"""A student without a browser: a client of Streamlit's own websocket protocol, for the class benchmark.

A browser session costs its machine far more than the server's share of a page (React, Plotly, pictures),
so on two cores 30 browsers measure the browsers. This client does what a browser asks of the server and
nothing else: it opens a session on ``/_stcore/stream``, sends the same ``BackMsg`` a browser sends (a
page by its URL path and query string, or the widget states after a click), reads every ``ForwardMsg``
until the script has finished, and downloads every picture the page shows from the media endpoint. What
it times is the server's part of a student's wait: from the action to the last picture received.

Widgets are found on the page as a browser finds them, by their label or their key (a widget id ends in
its key), and given values in the browser's own wire format (a selectbox's or radio's formatted option, a
button's trigger, a component's JSON).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field

import websockets
from google.protobuf import text_format
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

__all__ = ["PageRun", "StreamlitSession"]

#: Element types that are widgets, whose ``id`` a click refers to.
WIDGETS = ("selectbox", "radio", "button", "slider", "checkbox", "toggle", "button_group", "component_instance",
           "text_input", "number_input", "multiselect")


@dataclass
class PageRun:
    """What one script run put on the page: every element by its place, and the pictures' bytes."""

    elements: dict[tuple[int, ...], object] = field(default_factory=dict)
    picture_bytes: int = 0

    @property
    def text(self) -> str:
        return "\n".join(text_format.MessageToString(e, as_utf8=True) for e in self.elements.values())

    @property
    def failed(self) -> bool:
        """An exception box, or the app's own last-line-of-defence message."""
        return any(e.WhichOneof("type") == "exception" for e in self.elements.values()) \
            or "Something went wrong while drawing this page" in self.text

    def widget(self, kind: str, label: str | None = None, key: str | None = None):
        """The first widget of ``kind`` with this label, or whose id ends in this key."""
        for element in self.elements.values():
            if element.WhichOneof("type") != kind:
                continue
            proto = getattr(element, kind)
            if (label is not None and proto.label == label) or (key is not None and proto.id.endswith(key)):
                return proto
        raise LookupError(f"no {kind} {label or key!r} on the page")


class StreamlitSession:
    """One browser tab's session; ``async with StreamlitSession(url) as s: await s.open("grad_cam", "class=243")``."""

    def __init__(self, url: str, timeout: float = 180.0):
        self.url, self.timeout = url, timeout
        self.states: dict[str, WidgetState] = {}  # what the browser would send back: the values set so far
        self.page_name, self.query = "", ""
        self.last = PageRun()

    async def connect(self) -> StreamlitSession:
        self.socket = await websockets.connect(self.url.replace("http", "ws", 1) + "/_stcore/stream",
                                               subprotocols=["streamlit"], max_size=None, open_timeout=self.timeout)
        return self

    async def close(self) -> None:
        await self.socket.close()

    async def __aenter__(self) -> StreamlitSession:
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open(self, page: str, query: str = "") -> PageRun:
        """Open a page by its URL path, as the first load of an address does."""
        self.page_name, self.query, self.states = page, query, {}
        return await self._rerun({})

    async def choose(self, proto, option_containing: str) -> PageRun:
        """Pick the selectbox's or radio's option whose text contains ``option_containing``."""
        option = next(o for o in proto.options if option_containing in o)
        return await self._rerun({proto.id: WidgetState(id=proto.id, string_value=option)}, keep=True)

    async def click(self, proto) -> PageRun:
        return await self._rerun({proto.id: WidgetState(id=proto.id, trigger_value=True)}, keep=False)

    async def component(self, proto, value: dict) -> PageRun:
        return await self._rerun({proto.id: WidgetState(id=proto.id, json_value=json.dumps(value))}, keep=True)

    async def _rerun(self, changes: dict[str, WidgetState], keep: bool = True) -> PageRun:
        message = BackMsg()
        message.rerun_script.page_name = self.page_name
        message.rerun_script.query_string = self.query
        for state in {**self.states, **changes}.values():
            message.rerun_script.widget_states.widgets.append(state)
        if keep:
            self.states.update(changes)
        await self.socket.send(message.SerializeToString())
        run = PageRun()
        deadline = time.monotonic() + self.timeout
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await asyncio.wait_for(self.socket.recv(), max(0.0, deadline - time.monotonic())))
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                run.elements[tuple(forward.metadata.delta_path)] = forward.delta.new_element
            elif kind == "script_finished":
                if forward.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    run = PageRun()  # the app reruns itself (a st.rerun): the page starts again
                    continue
                break
        urls = [picture.url for element in run.elements.values() if element.WhichOneof("type") == "imgs"
                for picture in element.imgs.imgs]
        sizes = await asyncio.gather(*(asyncio.to_thread(self._download, url) for url in urls))
        run.picture_bytes = sum(sizes)
        self.last = run
        return run

    def _download(self, path: str) -> int:
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as response:
            return len(response.read())
