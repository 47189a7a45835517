"""A small in-house training client (stdlib only): the kind of client `kiln conform` checks.

It speaks the API directly (docs/protocol.md): a session, a LoRA model, forward_backward and
optim_step as futures polled with retrieve_future (a 408 there means "not yet"). No retries and
no chunking: a real client has them, and `kiln conform` finds that this one does not.
"""
import json
import urllib.error
import urllib.request

__version__ = "0.1"


class Service:
    def __init__(self, base_url, api_key):
        self.base_url, self.api_key, self.models = base_url.rstrip("/"), api_key, 0
        self.session_id = self.post("/api/v1/create_session", {"tags": [], "user_metadata": {}, "sdk_version": "myclient",
                                                                      "type": "create_session"})["session_id"]

    def post(self, path, body):
        req = urllib.request.Request(self.base_url + path, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-API-Key": self.api_key})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"{}")

    def result(self, request_id):  # polls until the future is done
        while True:
            try:
                out = self.post("/api/v1/retrieve_future", {"request_id": request_id})
            except urllib.error.HTTPError as e:
                if e.code == 408:  # the long-poll ended before the result: ask again
                    continue
                raise
            if out.get("type") != "try_again":
                if "error" in out:
                    raise RuntimeError(out["error"])
                return out

    def lora_client(self, base_model, rank, seed=None):
        lora = {"rank": rank} if seed is None else {"rank": rank, "seed": seed}
        rid = self.post("/api/v1/create_model", {"session_id": self.session_id, "model_seq_id": self.models,
                                                 "base_model": base_model, "lora_config": lora,
                                                 "type": "create_model"})["request_id"]
        self.models += 1
        return TrainingClient(self, self.result(rid)["model_id"])


class TrainingClient:
    def __init__(self, service, model_id):
        self.service, self.model_id, self.seq = service, model_id, 0

    def run(self, path, body):  # one request under the next seq_id, then its result
        self.seq += 1
        body = dict(body, model_id=self.model_id, seq_id=self.seq)
        return self.service.result(self.service.post(path, body)["request_id"])

    def forward_backward(self, data, loss_fn, config=None, backward=True):
        data = [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": d["model_input"]}]},
                 "loss_fn_inputs": d["loss_fn_inputs"]} for d in data]
        path, key = ("/api/v1/forward_backward", "forward_backward_input") if backward else ("/api/v1/forward", "forward_input")
        return self.run(path, {key: {"data": data, "loss_fn": loss_fn, "loss_fn_config": config}})

    def optim_step(self, **adam_params):
        return self.run("/api/v1/optim_step", {"adam_params": adam_params, "type": "optim_step"})["metrics"]
