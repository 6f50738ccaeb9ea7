from tests.browser.test_chat_pages import *  # noqa

def test_offline(kaiwa_server, new_context):
    alice = log_in(new_context(), kaiwa_server, "alice")
    js = """() => new Promise(r => { const w = new WebSocket('ws://' + location.host + '/ws/chat/x/'); w.onmessage=()=>{r('msg'); w.close()}; w.onerror=()=>r('error'); setTimeout(()=>r('timeout'),3000)})"""
    print("online", alice.evaluate(js))
    alice.context.set_offline(True); print("offline", alice.evaluate(js))
    alice.context.set_offline(False); print("online", alice.evaluate(js))
