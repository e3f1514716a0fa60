"""Proves the browser harness end to end with a real anywidget defined inline.

The counter widget renders a button; a click increments the synced ``value`` trait;
a Python observer echoes it into the ``echo`` trait, which the widget shows.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .harness import parse_ws_frame

pytestmark = pytest.mark.browser

COUNTER_CLASS = '''\
import anywidget
import traitlets


class Counter(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
      const button = document.createElement("button");
      button.className = "sdw-counter";
      const echo = document.createElement("span");
      echo.className = "sdw-echo";
      const draw = () => {
        button.textContent = `count is ${model.get("value")}`;
        echo.textContent = `python says ${model.get("echo")}`;
      };
      button.addEventListener("click", () => {
        model.set("value", model.get("value") + 1);
        model.save_changes();
      });
      model.on("change:value", draw);
      model.on("change:echo", draw);
      draw();
      el.append(button, echo);
    }
    export default { render };
    """
    value = traitlets.Int(0).tag(sync=True)
    echo = traitlets.Unicode("none").tag(sync=True)

    def __repr__(self):
        return f"Counter(value={self.value})"
'''

COUNTER_INSTANCE = """\
w = Counter()
w.observe(lambda change: setattr(w, "echo", f"value={change['new']}"), names=["value"])
w
"""

CELLS = ["%%markdown\n# Harness check", COUNTER_CLASS, COUNTER_INSTANCE]

# Counts comm_msg on the JupyterLab kernel connection, independently of the wire monitor.
_JS_HOOK_ANYMESSAGE = """
(path) => {
  const k = window.__sdw.kernel(path);
  window.__sdwAny = {recv: 0, send: 0};
  k.anyMessage.connect((_, args) => {
    if (args.msg.header.msg_type === 'comm_msg') window.__sdwAny[args.direction] += 1;
  });
  return true;
}
"""


def test_lab_counter_roundtrip(lab):
    page = lab.open_notebook(CELLS)
    lab.run_all()
    cells = lab.wait_idle()
    assert [c["count"] for c in cells if c["type"] == "code"] == [1, 2]

    button = lab.output_area(2).locator("button.sdw-counter")
    expect(button).to_have_text("count is 0")
    assert lab.execute("print(w.value, w.echo)").strip() == "0 none"

    page.evaluate(_JS_HOOK_ANYMESSAGE, lab.path)
    with lab.count_messages() as msgs:
        button.click()
        lab.wait_for_stdout("print(w.value)", "1")
    expect(lab.output_area(2).locator(".sdw-echo")).to_have_text("python says value=1")
    expect(button).to_have_text("count is 1")

    # one update up; ipywidgets' echo_update for `value` plus the observer's `echo` update down
    summary = msgs.summary()
    assert msgs.to_kernel == 1, summary
    assert msgs.to_browser == 2, summary
    assert summary["to_kernel comm_msg/update"] == 1, summary
    assert summary["to_browser comm_msg/echo_update"] == 1, summary
    assert summary["to_browser comm_msg/update"] == 1, summary
    # the wire count agrees with JupyterLab's own kernel.anyMessage signal
    page.wait_for_function("window.__sdwAny.recv >= 2 && window.__sdwAny.send >= 1")
    assert page.evaluate("window.__sdwAny") == {"recv": 2, "send": 1}
    assert lab.messages.undecoded == 0

    # Python -> browser direction
    lab.execute("w.value = 41")
    expect(button).to_have_text("count is 41")
    expect(lab.output_area(2).locator(".sdw-echo")).to_have_text("python says value=41")

    # The isolated config took effect: no news popup plugin, no autosave.
    assert (
        page.evaluate("window.jupyterapp.hasPlugin('@jupyterlab/apputils-extension:announcements')")
        is False
    )
    assert (
        page.evaluate("window.jupyterapp.commands.isToggled('docmanager:toggle-autosave')") is False
    )

    lab.output_area(2).scroll_into_view_if_needed()
    shot = lab.screenshot("harness-lab-counter")
    assert shot.stat().st_size > 10_000
    lab.screenshot("harness-lab-counter-output", locator=lab.output_area(2))

    # Kernel errors surface with their traceback.
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        lab.execute("1/0")


def test_voila_counter_roundtrip(voila_server):
    app = voila_server(CELLS)
    page = app.open(wait_for="button.sdw-counter")
    button = page.locator("button.sdw-counter")
    expect(button).to_have_text("count is 0")
    with app.count_messages() as msgs:
        button.click()
        # the browser only shows this after Python's observer set `echo`
        expect(page.locator(".sdw-echo")).to_have_text("python says value=1")
    expect(button).to_have_text("count is 1")
    assert msgs.to_kernel == 1, msgs.summary()
    assert msgs.to_browser == 2, msgs.summary()
    assert app.monitors[-1].undecoded == 0
    shot = app.screenshot("harness-voila-counter")
    assert shot.stat().st_size > 5_000


def test_parse_ws_frame_v1():
    """The v1 binary layout as jupyter_server's serialize_msg_to_ws_v1 writes it."""
    import json

    parts = [
        json.dumps({"msg_type": "comm_msg", "msg_id": "a"}).encode(),
        json.dumps({"msg_id": "p"}).encode(),
        b"{}",
        json.dumps({"data": {"method": "update"}}).encode(),
        b"\x00\x01buffer",
    ]
    channel = b"iopub"
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(channel))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    frame = (
        len(offsets).to_bytes(8, "little")
        + b"".join(o.to_bytes(8, "little") for o in offsets)
        + channel
        + b"".join(parts)
    )
    chan, header, parent, content = parse_ws_frame(frame)
    assert (chan, header["msg_type"], parent["msg_id"], content["data"]["method"]) == (
        "iopub",
        "comm_msg",
        "p",
        "update",
    )
    legacy = json.dumps(
        {"channel": "shell", "header": {"msg_type": "x"}, "parent_header": {}, "content": {}}
    )
    assert parse_ws_frame(legacy)[:2] == ("shell", {"msg_type": "x"})
