"""`runctl runs` with a filter that matches nothing says so, not "no runs yet"."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


def test_an_empty_filtered_listing_names_its_filter(session):
    assert "no runs yet" in str(session.runs())
    session.train(code="print(1)", experiment="digits")
    assert "digits" in str(session.runs())
    text = str(session.runs(status="running", experiment="digits"))
    assert text.startswith("no runs with experiment digits, status running:"), text
    assert "no runs yet" not in text
    InteractiveShell.instance()
    with capture_output() as cap:
        session.runs(status="running")._ipython_display_()
    assert "no runs with status running" in cap.outputs[0].data["text/html"]
