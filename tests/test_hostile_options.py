"""Option values a hostile user types that used to pass silently (issue 8, items 2 and 4)."""
from __future__ import annotations

import pytest

from gstore.errors import OptionError
from gstore.pipeline.ingest.node_data import parse_split_spec


@pytest.mark.parametrize("spec", ["random:nan,0,0", "random:0,0,nan", "random:0.5,nan,0.1",
                                  "random:inf,0,0", "random:-inf,1,0", "random:0.5,0.5,-0.0001"])
def test_split_fractions_must_be_finite_and_in_range(spec):
    """NaN compares false with everything, so 'random:nan,0,0' passed the range checks and put every
    node in train."""
    with pytest.raises(OptionError, match="--split"):
        parse_split_spec(spec)


def test_valid_split_fractions_still_parse():
    assert parse_split_spec("random:0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split_spec("random:0,0,0") == (0.0, 0.0, 0.0)
