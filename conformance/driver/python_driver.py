#!/usr/bin/env python3
"""A conformance driver (DRIVER.md) around a minimal Python client of the training API.

The client is written here, with the standard library only (JSON transport, like tinker 0.23),
to show that the harness checks a client in another language. It implements a subset of the
operations; the others answer not_implemented, and the properties that need them are skipped.
"""
import http.client
import json
import sys
import time
import urllib.parse

RETRY_STATUSES = {408, 409, 429} | set(range(500, 600))
MAX_CHUNK_DATUMS = 1024  # protocol.md §W4.2


class ClientError(Exception):
    """Refused before anything was sent (the SDKs' ValueError)."""


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class RequestFailed(Exception):
    def __init__(self, message, category):
        super().__init__(message)
        self.category = category


class PromiseExpired(Exception):
    pass


class Connection:
    def __init__(self, base_url, api_key, options):
        url = urllib.parse.urlparse(base_url)
        self.host, self.port = url.hostname, url.port or 80
        self.api_key = api_key
        self.delay = float(options.get("retry_initial_delay_seconds", 0.5))
        self.budget = float(options.get("retry_budget_seconds", 300))

    def send(self, method, path, body=None):
        """One HTTP exchange: (status, parsed JSON or None); status 0 when no answer came."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"X-API-Key": self.api_key, "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, None
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()

    def call(self, method, path, body=None):
        """Retries connection errors, 408/409/429/5xx and an empty 400 with backoff (protocol.md §W1.7)."""
        start, attempt = time.monotonic(), 0
        while True:
            status, answer = self.send(method, path, body)
            if 200 <= status < 300:
                return answer if answer is not None else {}
            retry = status == 0 or status in RETRY_STATUSES or (status == 400 and answer is None)
            if not retry or time.monotonic() - start > self.budget:
                raise ApiError(status, "HTTP %d from %s: %s" % (status, path, answer))
            time.sleep(min(self.delay * 2 ** attempt, 30))
            attempt += 1

    def poll(self, request_id):
        """The futures loop (protocol.md §W3.3)."""
        bad_requests, attempt, start = 0, 0, time.monotonic()
        while True:
            status, answer = self.send("POST", "/api/v1/retrieve_future",
                                       {"request_id": request_id, "allow_metadata_only": False})
            if status == 200 and isinstance(answer, dict):
                if answer.get("type") == "try_again":
                    continue
                if "error" in answer:
                    raise RequestFailed(answer["error"], answer.get("category", "unknown"))
                return answer
            if status == 408:
                continue
            if status == 410:
                raise PromiseExpired("Promise expired for request %s" % request_id)
            if status == 400 and answer is not None:
                bad_requests += 1
                if bad_requests > 3:
                    raise ApiError(400, "Error retrieving result: %s" % answer)
                continue
            if status == 0 or status == 429 or status >= 500 or status == 400:
                if time.monotonic() - start > self.budget:
                    raise ApiError(status, "Error retrieving result: HTTP %d" % status)
                time.sleep(min(self.delay * 2 ** attempt, 30))
                attempt += 1
                continue
            raise ApiError(status, "Error retrieving result: HTTP %d %s" % (status, answer))


def merge_metrics(chunks):
    """Merges chunk metrics by suffix (protocol.md §W3.6)."""
    weights = [len(c["loss_fn_outputs"]) for c in chunks]
    keys = set.intersection(*(set(c["metrics"]) for c in chunks))
    merged = {}
    for key in sorted(keys):
        name, sep, suffix = key.partition(":")
        if not sep or ":" in suffix:
            raise ValueError("metric key %r must have exactly one ':'" % key)
        values = [c["metrics"][key] for c in chunks]
        if suffix == "sum":
            merged[key] = sum(values)
        elif suffix == "mean":
            merged[key] = sum(v * w for v, w in zip(values, weights)) / sum(weights)
        elif suffix == "min":
            merged[key] = min(values)
        elif suffix == "max":
            merged[key] = max(values)
        elif suffix == "slack":
            merged[key] = max(values) - sum(v * w for v, w in zip(values, weights)) / sum(weights)
    return merged


class TrainingClient:
    def __init__(self, conn, model_id):
        self.conn, self.model_id, self.seq = conn, model_id, 0

    def submit(self, path, body):
        self.seq += 1
        body = dict(body, model_id=self.model_id, seq_id=self.seq)
        return self.conn.call("POST", path, body)["request_id"]

    def run_chunks(self, path, key, data, loss_fn, config):
        if not data:
            raise ClientError("No data provided")
        ids = []
        for first in range(0, len(data), MAX_CHUNK_DATUMS):  # serial chunks, in order
            inp = {"data": data[first:first + MAX_CHUNK_DATUMS], "loss_fn": loss_fn}
            if config:
                inp["loss_fn_config"] = config
            ids.append(self.submit(path, {key: inp}))
        chunks = [self.conn.poll(i) for i in ids]
        outputs = [o for c in chunks for o in c["loss_fn_outputs"]]
        return {"loss_fn_output_type": chunks[0]["loss_fn_output_type"], "loss_fn_outputs": outputs,
                "metrics": merge_metrics(chunks)}

    def optim_step(self, adam, normalization):
        body = {"adam_params": adam, "type": "optim_step"}
        if normalization:
            body["grad_accumulation_normalization"] = normalization
        return {"metrics": self.conn.poll(self.submit("/api/v1/optim_step", body)).get("metrics") or {}}

    def save_state(self, name, ttl):
        body = {"path": name, "overwrite": False, "type": "save_weights"}
        if ttl is not None:
            body["ttl_seconds"] = ttl
        return {"path": self.conn.poll(self.submit("/api/v1/save_weights", body))["path"]}


def wire_datum(d):
    return {"model_input": {"chunks": [{"tokens": d["model_input"], "type": "encoded_text"}]},
            "loss_fn_inputs": d.get("loss_fn_inputs", {})}


def resolve_checkpoint_path(name, job):
    """protocol.md §S9.8, checked in the Fireworks SDK's order (DIFFERENCES.md)."""
    if name.startswith("gs://") or name.startswith("/") or not job:
        return name
    if not job.strip():
        raise ClientError("source_job_id cannot be empty")
    if not name.strip():
        raise ClientError("checkpoint_name cannot be empty")
    if name.strip().startswith("gs://") or name.strip().startswith("/"):
        raise ClientError("checkpoint_name must be a logical checkpoint name, not a full path")
    return "cross_job://%s/%s" % (job.strip(), name.strip())


ADAM_DEFAULTS = {"learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.95, "eps": 1e-12, "weight_decay": 0.0,
                 "grad_clip_norm": 0.0}


class NotImplementedOp(Exception):
    pass


class BadRequest(Exception):
    pass


class Driver:
    def __init__(self):
        self.services, self.clients = {}, {}

    def handle(self, op, args):
        if op == "describe":
            return {"name": "kiln-python-driver", "version": "1", "lacks": []}
        if op == "create_service":
            conn = Connection(args["base_url"], args["api_key"], args.get("options", {}))
            conn.call("POST", "/api/v1/client/config", {"sdk_version": "kiln-python-driver"})
            session = conn.call("POST", "/api/v1/create_session",
                                {"tags": [], "user_metadata": {}, "sdk_version": "kiln-python-driver",
                                 "type": "create_session"})["session_id"]
            conn.session_id, conn.model_seq, conn.keys = session, 0, set()
            handle = "s%d" % (len(self.services) + 1)
            self.services[handle] = conn
            return {"service": handle, "session_id": session}
        if op == "create_training_client":
            conn = self.services[args["service"]]
            lora = args.get("lora", {})
            config = {"rank": args["lora_rank"], "train_unembed": lora.get("train_unembed", True),
                      "train_mlp": lora.get("train_mlp", True), "train_attn": lora.get("train_attn", True)}
            if "seed" in lora:
                config["seed"] = lora["seed"]
            key = (args["base_model"], config["rank"], config.get("seed"), config["train_mlp"], config["train_attn"],
                   config["train_unembed"])
            if key in conn.keys:
                raise ClientError("A training client for '%s' (lora_rank=%d) already exists on this service. Create a "
                                  "new FiretitanServiceClient for a separate trainer." % (args["base_model"], config["rank"]))
            body = {"session_id": conn.session_id, "model_seq_id": conn.model_seq, "base_model": args["base_model"],
                    "lora_config": config, "type": "create_model"}
            conn.model_seq += 1
            model_id = conn.poll(conn.call("POST", "/api/v1/create_model", body)["request_id"])["model_id"]
            conn.keys.add(key)
            handle = "t%d" % (len(self.clients) + 1)
            self.clients[handle] = TrainingClient(conn, model_id)
            return {"client": handle, "model_id": model_id}
        if op == "resolve_checkpoint_path":
            return {"path": resolve_checkpoint_path(args["name"], args.get("source_job_id"))}
        if op == "close":
            return {}
        if op in ("forward", "forward_backward", "optim_step", "save_state", "list_checkpoints", "get_info"):
            if args.get("client") not in self.clients:
                raise BadRequest("unknown client handle")
            tc = self.clients[args["client"]]
            if op in ("forward", "forward_backward"):
                data = [wire_datum(d) for d in args["data"]]
                path, key = ("/api/v1/forward", "forward_input") if op == "forward" else \
                            ("/api/v1/forward_backward", "forward_backward_input")
                return tc.run_chunks(path, key, data, args.get("loss_fn", "cross_entropy"), args.get("loss_fn_config"))
            if op == "optim_step":
                adam = dict(ADAM_DEFAULTS, **args.get("adam_params", {}))
                return tc.optim_step(adam, args.get("grad_accumulation_normalization"))
            if op == "save_state":
                return tc.save_state(args["name"], args.get("ttl_seconds"))
            if op == "list_checkpoints":
                return {"checkpoints": tc.conn.call("GET", "/api/v1/list_checkpoints").get("checkpoints", [])}
            info = tc.conn.call("POST", "/api/v1/get_info", {"model_id": tc.model_id, "type": "get_info"})
            return {"model_id": info["model_id"], "is_lora": info.get("is_lora", False),
                    "lora_rank": info.get("lora_rank", 0)}
        raise NotImplementedOp("operation '%s' is not implemented by the Python driver" % op)


def main():
    driver = Driver()
    for line in sys.stdin:
        if not line.strip():
            continue
        response = {"id": None}
        op = None
        try:
            request = json.loads(line)
            response["id"] = request.get("id")
            op = request["op"]
            response["result"] = driver.handle(op, request.get("args", {}))
            response["ok"] = True
        except RequestFailed as e:
            response.update(ok=False, error={"kind": "request_failed", "message": str(e), "category": e.category})
        except ApiError as e:
            response.update(ok=False, error={"kind": "api_error", "message": str(e), "status": e.status})
        except PromiseExpired as e:
            response.update(ok=False, error={"kind": "promise_expired", "message": str(e)})
        except ClientError as e:
            response.update(ok=False, error={"kind": "invalid_argument", "message": str(e)})
        except NotImplementedOp as e:
            response.update(ok=False, error={"kind": "not_implemented", "message": str(e)})
        except (BadRequest, KeyError, ValueError) as e:
            response.update(ok=False, error={"kind": "bad_request", "message": repr(e)})
        except Exception as e:  # noqa: BLE001 - the protocol's catch-all kind
            response.update(ok=False, error={"kind": "internal", "message": repr(e)})
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()
        if op == "close":
            return


if __name__ == "__main__":
    main()
