import pytest
from pathlib import Path
from tests.browser import test_chat_pages as t

SRC = Path("kaiwa/chat/static/chat/room.js").read_text()
MUTANTS = {
    "no_resume": ('if (lastSeq !== null) url += "?after=" + lastSeq;', ''),
    "no_dedupe_no_resume": ('if (lastSeq !== null && m.seq <= lastSeq) return;', ''),
    "resume_from_zero": ('url += "?after=" + lastSeq;', 'url += "?after=0";'),
    "no_dedupe_resume_from_zero": (None, None),
    "room_ignored": ("'/ws/chat/' + encodeURIComponent(room)", "'/ws/chat/room_1'"),
}

@pytest.mark.parametrize("name", list(MUTANTS))
@pytest.mark.parametrize("test", ["test_room_page_resumes_after_server_restart", "test_message_posted_is_not_seen_by_anyone_in_different_room"])
def test_mutant(name, test, kaiwa_server, new_context):
    js = SRC
    if name == "no_dedupe_resume_from_zero":
        js = js.replace('if (lastSeq !== null && m.seq <= lastSeq) return;', '').replace('url += "?after=" + lastSeq;', 'url += "?after=0";')
    else:
        a, b = MUTANTS[name]
        js = js.replace(a.replace("'", '"'), b.replace("'", '"'))
    assert js != SRC
    def make():
        c = new_context()
        c.route("**/room.js", lambda route: route.fulfill(body=js, content_type="application/javascript"))
        return c
    with pytest.raises(AssertionError) as e:
        getattr(t, test)(kaiwa_server, make)
    print(name, test, str(e.value)[:150])
