#!/usr/bin/env python3
# kiln conform's driver (conformance/DRIVER.md) for an in-house client, here myclient.py.
import json, sys
import myclient

services, clients = {}, {}

def handle(op, a):
    if op == "describe":  # the report's first line; what the client lacks is not generated
        return {"name": "myclient", "version": myclient.__version__,
                "lacks": ["full_parameter", "grad_accumulation_normalization", "duplicate_client_rule"]}
    if op == "create_service":
        s = services["s%d" % (len(services) + 1)] = myclient.Service(a["base_url"], a["api_key"])
        return {"service": "s%d" % len(services), "session_id": s.session_id}
    if op == "create_training_client":
        tc = services[a["service"]].lora_client(a["base_model"], a["lora_rank"], a.get("lora", {}).get("seed"))
        clients["t%d" % (len(clients) + 1)] = tc
        return {"client": "t%d" % len(clients), "model_id": tc.model_id}
    if op in ("forward", "forward_backward"):
        tc = clients[a["client"]]
        return tc.forward_backward(a["data"], a.get("loss_fn", "cross_entropy"), a.get("loss_fn_config"), op != "forward")
    if op == "optim_step" and not a.get("grad_accumulation_normalization"):
        return {"metrics": clients[a["client"]].optim_step(**a["adam_params"])}
    if op == "close":
        return {}
    raise NotImplementedError("myclient has no %s" % op)  # the property is a skip, not a failure

for line in sys.stdin:
    req = json.loads(line)
    try:
        out = {"id": req["id"], "ok": True, "result": handle(req["op"], req.get("args", {}))}
    except NotImplementedError as e:
        out = {"id": req["id"], "ok": False, "error": {"kind": "not_implemented", "message": str(e)}}
    except Exception as e:
        out = {"id": req["id"], "ok": False, "error": {"kind": "internal", "message": repr(e)}}
    print(json.dumps(out), flush=True)
    if req["op"] == "close":
        break
