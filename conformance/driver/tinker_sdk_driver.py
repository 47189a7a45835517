#!/usr/bin/env python3
"""The conformance driver (conformance/DRIVER.md) for a tinker-compatible Python SDK, unchanged.

    kiln conform --driver tinker-sdk [--python PATH]        # the short form
    python3 tinker_sdk_driver.py [--module NAME]            # what it runs

Every operation goes through the SDK's public API (ServiceClient, TrainingClient,
SamplingClient, RestClient); retries, futures, chunking and the wire format are the SDK's own, so
what the harness checks is the SDK. `--module` names a fork with the same API (default `tinker`).
The SDK is never part of this repository: it must already be importable by the interpreter that
runs this file.

What a tinker client lacks (LoRA only, no grad_accumulation_normalization, no duplicate-client
rule) is declared in `describe`; Fireworks-only operations answer not_implemented.
"""
import argparse
import importlib
import os
import importlib.metadata
import json
import sys
import traceback


class NotImplementedOp(Exception):
    pass


class BadRequest(Exception):
    pass


def arg(args, key):
    if key not in args:
        raise BadRequest("missing args field '%s'" % key)
    return args[key]


class Driver:
    def __init__(self, module_name):
        self.module_name = module_name
        self.sdk = importlib.import_module(module_name)
        self.types = importlib.import_module(module_name + ".types")
        self.services, self.clients, self.samplers, self.futures = {}, {}, {}, {}
        self.client_service = {}  # training-client handle -> the ServiceClient that made it
        self.torch = None

    # --- values -------------------------------------------------------------------------------

    def tensor(self, t):
        return self.types.TensorData(data=list(t["data"]), dtype=t["dtype"], shape=t.get("shape"))

    def data(self, args):
        out = []
        for d in arg(args, "data"):
            inputs = {k: self.tensor(v) for k, v in d.get("loss_fn_inputs", {}).items()}
            out.append(self.types.Datum(model_input=self.types.ModelInput.from_ints(list(d["model_input"])),
                                        loss_fn_inputs=inputs))
        return out

    @staticmethod
    def tensor_json(t):
        data = t.data if isinstance(t.data, list) else list(t.tolist() if hasattr(t, "tolist") else t.data)
        return {"data": data, "dtype": str(t.dtype), "shape": list(t.shape) if t.shape is not None else [len(data)]}

    def output(self, o):
        outs = [{k: self.tensor_json(v) for k, v in fields.items()} for fields in o.loss_fn_outputs]
        return {"loss_fn_output_type": o.loss_fn_output_type, "loss_fn_outputs": outs, "metrics": dict(o.metrics)}

    def adam(self, a):
        fields = getattr(self.types.AdamParams, "model_fields", None) or getattr(self.types.AdamParams, "__fields__", {})
        kwargs = {}
        for key in ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm"):
            if key not in a:
                continue
            if key not in fields:
                if a[key]:
                    raise NotImplementedOp("this SDK's AdamParams has no '%s'" % key)
                continue
            kwargs[key] = a[key]
        return self.types.AdamParams(**kwargs)

    def sampling_params(self, p):
        kwargs = {k: p[k] for k in ("max_tokens", "temperature", "top_k", "top_p", "seed", "stop") if k in p}
        return self.types.SamplingParams(**kwargs)

    # --- handles ------------------------------------------------------------------------------

    def get(self, table, args, key, what):
        handle = arg(args, key)
        if handle not in table:
            raise BadRequest("unknown %s handle %r" % (what, handle))
        return table[handle]

    def add(self, table, prefix, value):
        handle = "%s%d" % (prefix, len(table) + 1)
        table[handle] = value
        return handle

    def add_training_client(self, tc, sc):
        handle = self.add(self.clients, "t", tc)
        self.client_service[handle] = sc
        return {"client": handle, "model_id": tc.model_id}

    # --- operations ---------------------------------------------------------------------------

    def handle(self, op, args):
        if op == "describe":
            try:
                version = importlib.metadata.version(self.module_name)
            except importlib.metadata.PackageNotFoundError:
                version = getattr(self.sdk, "__version__", "")
            return {"name": self.module_name, "version": version,
                    "lacks": ["full_parameter", "grad_accumulation_normalization", "duplicate_client_rule"]}
        if op == "close":
            return {}
        if op == "create_service":
            sc = self.sdk.ServiceClient(base_url=arg(args, "base_url"), api_key=arg(args, "api_key"))
            return {"service": self.add(self.services, "s", sc), "session_id": sc.holder.get_session_id()}
        if op == "create_training_client":
            sc = self.get(self.services, args, "service", "service")
            rank = int(arg(args, "lora_rank"))
            if rank == 0:
                raise NotImplementedOp("tinker trains LoRA adapters only (lora_rank 0)")
            lora = args.get("lora", {})
            kwargs = {k: lora[k] for k in ("seed", "train_mlp", "train_attn", "train_unembed") if k in lora}
            if args.get("user_metadata"):
                kwargs["user_metadata"] = args["user_metadata"]
            return self.add_training_client(sc.create_lora_training_client(base_model=arg(args, "base_model"), rank=rank, **kwargs), sc)
        if op == "create_training_client_from_state":
            sc = self.get(self.services, args, "service", "service")
            make = (sc.create_training_client_from_state_with_optimizer if args.get("with_optimizer")
                    else sc.create_training_client_from_state)
            return self.add_training_client(make(arg(args, "path")), sc)
        if op == "create_sampling_client":
            sc = self.get(self.services, args, "service", "service")
            sampler = sc.create_sampling_client(model_path=args.get("path") or None, base_model=args.get("base_model") or None)
            return {"sampler": self.add(self.samplers, "p", sampler)}
        if op == "sample":
            sampler = self.get(self.samplers, args, "sampler", "sampler")
            r = sampler.sample(prompt=self.types.ModelInput.from_ints(list(arg(args, "prompt"))),
                               num_samples=int(args.get("num_samples", 1)),
                               sampling_params=self.sampling_params(args.get("sampling_params", {}))).result()
            return {"sequences": [{"tokens": list(s.tokens), "logprobs": list(s.logprobs or []),
                                   "stop_reason": str(getattr(s.stop_reason, "value", s.stop_reason))} for s in r.sequences]}
        if op == "compute_logprobs":
            sampler = self.get(self.samplers, args, "sampler", "sampler")
            return {"logprobs": list(sampler.compute_logprobs(self.types.ModelInput.from_ints(list(arg(args, "prompt")))).result())}
        if op == "delete_checkpoint":
            sc = self.get(self.services, args, "service", "service")
            sc.create_rest_client().delete_checkpoint_from_tinker_path(arg(args, "path")).result()
            return {}
        if op == "await":
            handle = arg(args, "future")
            if handle not in self.futures:
                raise BadRequest("unknown future handle %r" % handle)
            return self.futures.pop(handle)()
        if op in ("create_base_training_client", "resolve_checkpoint_path", "save_weights_for_sampler_ext"):
            raise NotImplementedOp("'%s' is a Fireworks SDK operation" % op)

        tc = self.get(self.clients, args, "client", "client")
        config = args.get("loss_fn_config") or None
        if op == "forward":
            return self.output(tc.forward(self.data(args), args.get("loss_fn", "cross_entropy"), config).result())
        if op in ("forward_backward", "submit_forward_backward"):
            f = tc.forward_backward(self.data(args), arg(args, "loss_fn"), config)
            return self.output(f.result()) if op == "forward_backward" else self.future(lambda: self.output(f.result()))
        if op in ("optim_step", "submit_optim_step"):
            if args.get("grad_accumulation_normalization"):
                raise NotImplementedOp("tinker's optim_step has no grad_accumulation_normalization")
            f = tc.optim_step(self.adam(args.get("adam_params", {})))
            result = lambda: {"metrics": dict(f.result().metrics or {})}
            return result() if op == "optim_step" else self.future(result)
        if op == "forward_backward_custom":
            return self.output(tc.forward_backward_custom(self.data(args), self.custom_loss(arg(args, "loss"))).result())
        if op == "save_state":
            return {"path": tc.save_state(arg(args, "name"), ttl_seconds=args.get("ttl_seconds")).result().path}
        if op == "load_state":
            return {"path": tc.load_state(arg(args, "path")).result().path}
        if op == "load_state_with_optimizer":
            return {"path": tc.load_state_with_optimizer(arg(args, "path")).result().path}
        if op == "save_weights_for_sampler":
            return {"path": tc.save_weights_for_sampler(arg(args, "name"), ttl_seconds=args.get("ttl_seconds")).result().path}
        if op == "list_checkpoints":  # the trainer's training-state names, through the REST client
            rest = self.client_service[args["client"]].create_rest_client()
            listed = rest.list_checkpoints(tc.model_id).result().checkpoints
            names = [c.checkpoint_id.split("/", 1)[-1] for c in listed if str(getattr(c.checkpoint_type, "value", c.checkpoint_type)) == "training"]
            return {"checkpoints": sorted(names)}
        if op == "get_info":
            i = tc.get_info()
            return {"model_id": i.model_id, "is_lora": bool(i.is_lora), "lora_rank": i.lora_rank or 0}
        raise NotImplementedOp("operation '%s' is not implemented by this driver" % op)

    def future(self, fn):
        return {"future": self.add(self.futures, "f", fn)}

    # The custom losses of DRIVER.md, in torch as the SDK's forward_backward_custom needs them.
    def custom_loss(self, name):
        if name not in ("neg_logprob_sum", "logprob_squared", "dpo_margin"):
            raise BadRequest("unknown custom loss %r" % name)
        try:
            import torch
        except ImportError:
            raise NotImplementedOp("forward_backward_custom needs torch, which this interpreter cannot import")

        def weights(datum, lp):
            w = datum.loss_fn_inputs.get("weights")
            return torch.tensor(list(w.data), dtype=lp.dtype) if w is not None else torch.ones_like(lp)

        def loss_fn(data, logprobs):
            lps = [lp.flatten() for lp in logprobs]
            if name == "neg_logprob_sum":
                loss = sum(-(weights(d, lp) * lp).sum() for d, lp in zip(data, lps))
            elif name == "logprob_squared":
                loss = sum((lp * lp).sum() for lp in lps)
            else:
                if len(lps) % 2:
                    raise ValueError("dpo_margin takes datums in (chosen, rejected) pairs; got %d datums" % len(lps))
                loss = sum(-torch.nn.functional.logsigmoid(0.1 * (lps[k].sum() - lps[k + 1].sum())) for k in range(0, len(lps), 2))
            return loss, {"custom_loss": float(loss.item())}
        return loss_fn


def error_of(sdk, e):
    """The DRIVER.md error for an exception the SDK raised."""
    name = type(e).__name__
    if isinstance(e, NotImplementedOp):
        return {"kind": "not_implemented", "message": str(e)}
    if isinstance(e, (BadRequest, KeyError)) and not isinstance(e, getattr(sdk, "TinkerError", ())):
        return {"kind": "bad_request", "message": str(e)}
    if isinstance(e, getattr(sdk, "RequestFailedError", ())):
        category = getattr(e, "category", "unknown")
        return {"kind": "request_failed", "message": str(e), "category": str(getattr(category, "value", category)).lower()}
    if isinstance(e, getattr(sdk, "APIStatusError", ())):
        return {"kind": "api_error", "message": str(e), "status": int(e.status_code)}
    if isinstance(e, getattr(sdk, "APIConnectionError", ())):
        return {"kind": "api_error", "message": str(e), "status": 0}
    if name == "RetryableException" or "Promise expired" in str(e):
        return {"kind": "promise_expired", "message": str(e)}
    if isinstance(e, ValueError):
        return {"kind": "invalid_argument", "message": str(e)}
    return {"kind": "internal", "message": "%s: %s" % (name, e)}


def serve(driver):
    """Answers DRIVER.md requests from stdin until close; every failure is an answer, never a crash."""
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
        except Exception as e:
            response["ok"] = False
            response["error"] = error_of(driver.sdk, e)
            if response["error"]["kind"] == "internal":
                traceback.print_exc(file=sys.stderr)
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()
        if op == "close" and response.get("ok"):
            break
    # The SDK's background threads (heartbeat, event loop) would keep the process alive.
    sys.stderr.flush()
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="tinker", help="the SDK's module name (a fork with tinker's API)")
    options = parser.parse_args()
    try:
        driver = Driver(options.module)
    except ImportError as e:
        print("tinker_sdk_driver: cannot import '%s' (%s). Install the SDK into this interpreter (pip install %s) or "
              "pass --python to kiln conform." % (options.module, e, options.module), file=sys.stderr, flush=True)
        return 3
    return serve(driver)


if __name__ == "__main__":
    sys.exit(main())
