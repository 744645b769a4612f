"""Assertions shared by the test modules."""

from __future__ import annotations

import pytest

from jstyle.errors import JStyleError


def one_line_error(call, *fragments: str) -> str:
    """``call()`` raises one :class:`JStyleError` line holding every fragment; its message."""
    with pytest.raises(JStyleError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message
