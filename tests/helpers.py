"""Assertions and fixtures' values shared by the test modules."""

from __future__ import annotations

import pytest

from jstyle.errors import JStyleError
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.objective import Objective
from jstyle.preprocessing import CAFFE

#: The paper's objective (eq. 7 with alpha/beta = 1e-3), for the tests' tiny random networks.
PAPER_OBJECTIVE = Objective(
    content_layers=(("relu4_2", 1.0),),
    style_layers=tuple((n, 0.2) for n in PAPER_STYLE_LAYERS),
    content_weight=1.0,
    style_weight=1e3,
    tv_weight=0.0,
    pooling="avg",
    preprocessing=CAFFE,
)


def one_line_error(call, *fragments: str) -> str:
    """``call()`` raises one :class:`JStyleError` line holding every fragment; its message."""
    with pytest.raises(JStyleError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message
