#!/usr/bin/env python3
# kiln conform's driver (conformance/DRIVER.md) for an in-house client, here myclient.py.
import json, sys
import myclient

services, clients = {}, {}
LACKS = ["full_parameter", "grad_accumulation_normalization", "duplicate_client_rule"]  # not generated

def handle(op, a):
    if op == "describe":
        return {"name": "myclient", "version": myclient.__version__, "lacks": LACKS}
    if op == "create_service":
        s = services["s%d" % (len(services) + 1)] = myclient.Service(a["base_url"], a["api_key"])
        return {"service": "s%d" % len(services), "session_id": s.session_id}
    if op == "create_training_client":
        tc = clients["t%d" % (len(clients) + 1)] = services[a["service"]].lora_client(
            a["base_model"], a["lora_rank"], a.get("lora", {}).get("seed"))
        return {"client": "t%d" % len(clients), "model_id": tc.model_id}
    if op in ("forward", "forward_backward"):
        return clients[a["client"]].forward_backward(a["data"], a.get("loss_fn", "cross_entropy"),
                                                     a.get("loss_fn_config"), backward=op != "forward")
    if op == "optim_step":
        return {"metrics": clients[a["client"]].optim_step(**a["adam_params"])}
    if op == "close":
        return {}
    raise NotImplementedError("myclient has no %s" % op)  # the property is a skip, not a failure

for req in map(json.loads, sys.stdin):
    try:
        out = {"id": req["id"], "ok": True, "result": handle(req["op"], req.get("args", {}))}
    except Exception as e:
        kind = "not_implemented" if isinstance(e, NotImplementedError) else "internal"
        out = {"id": req["id"], "ok": False, "error": {"kind": kind, "message": repr(e)}}
    print(json.dumps(out), flush=True)
    if req["op"] == "close":
        break
