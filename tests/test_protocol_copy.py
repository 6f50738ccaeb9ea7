"""docs/protocol.md is the client contract as the project keeps it
(shared/PROTOCOL.md beside the repository), copied so that a clone carries
it: the two must never drift apart."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "PROTOCOL.md"


def test_docs_protocol_is_the_shared_contract_word_for_word():
    copy = (ROOT / "docs" / "protocol.md").read_text()
    assert "version 3" in copy.lower()
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not beside this checkout: nothing to compare with")
    assert copy == SHARED.read_text(), "copy shared/PROTOCOL.md to docs/protocol.md"
