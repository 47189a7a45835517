#!/usr/bin/env python3
"""The conformance driver (conformance/DRIVER.md) for the Fireworks Training SDK, unchanged.

    kiln conform --driver fireworks-sdk [--python PATH]      # the short form
    python3 fireworks_sdk_driver.py                          # what it runs

FiretitanServiceClient / FiretitanTrainingClient from `fireworks.training.sdk`: full-parameter
and LoRA clients, grad_accumulation_normalization, save_weights_for_sampler_ext,
list_checkpoints, resolve_checkpoint_path and the duplicate-client rule, all the SDK's own.
The SDK is never part of this repository: it must already be importable.

Sampling goes the SDK's way: a sampler save is a snapshot (save_weights_for_sampler_ext), which
`create_sampling_client` hot-loads onto a deployment of its own (DeploymentManager, on the
control plane at the service's base URL) and samples with the SDK's DeploymentSampler
(`/inference/v1/completions`); compute_logprobs is an echoed one-token completion. A base-model
sampler is a deployment without hot-load.
"""
import asyncio
import importlib.metadata
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinker_sdk_driver  # noqa: E402
from tinker_sdk_driver import NotImplementedOp, arg  # noqa: E402

SDK_MODULE = "fireworks.training.sdk"


class FireworksDriver(tinker_sdk_driver.Driver):
    def __init__(self):
        super().__init__("tinker")  # the types and errors the Fireworks SDK builds on
        self.fw = __import__(SDK_MODULE, fromlist=["FiretitanServiceClient"])
        self.endpoints = {}      # service handle → (base_url, api_key)
        self.client_base = {}    # training client handle → base model
        self.snapshots = {}      # a sampler save's path → (its snapshot name, its base model)
        self.deploy_mgrs = {}    # (base_url, api_key) → DeploymentManager
        self.deployments = 0
        # One event loop for every sampler call: a DeploymentSampler keeps its async HTTP client,
        # which is bound to the loop that first used it.
        self.loop = asyncio.new_event_loop()

    def deployment_sampler(self, service, snapshot, base_model):
        """A deployment of its own for one sampling client: hot-loaded with `snapshot`, or serving its base."""
        base_url, api_key = self.endpoints[service]
        mgr = self.deploy_mgrs.get((base_url, api_key))
        if mgr is None:
            mgr = self.deploy_mgrs[(base_url, api_key)] = self.fw.DeploymentManager(api_key=api_key, base_url=base_url)
        self.deployments += 1
        deployment = "conform-%d-%d" % (os.getpid(), self.deployments)
        mgr.create_or_get(self.fw.DeploymentConfig(deployment_id=deployment, base_model=base_model,
                                                   enable_hot_load=snapshot is not None))
        mgr.wait_for_ready(deployment, poll_interval_s=0.2)
        if snapshot is not None and not mgr.hotload_and_wait(deployment, base_model, snapshot, timeout_seconds=120):
            raise RuntimeError(mgr.last_hotload_error_message or "hot-load of %s failed" % snapshot)
        return self.fw.DeploymentSampler(inference_url=base_url, model="accounts/%s/deployments/%s" % (mgr.account_id, deployment),
                                         api_key=api_key)

    def handle(self, op, args):
        if op == "describe":
            try:
                version = importlib.metadata.version("fireworks-ai")
            except importlib.metadata.PackageNotFoundError:
                version = ""
            return {"name": "fireworks-ai", "version": version, "lacks": []}
        if op == "create_service":
            sc = self.fw.FiretitanServiceClient(base_url=arg(args, "base_url"), api_key=arg(args, "api_key"))
            handle = self.add(self.services, "s", sc)
            self.endpoints[handle] = (arg(args, "base_url"), arg(args, "api_key"))
            return {"service": handle, "session_id": sc.holder.get_session_id()}
        if op == "create_training_client":
            sc = self.get(self.services, args, "service", "service")
            lora = args.get("lora", {})
            kwargs = {k: lora[k] for k in ("seed", "train_mlp", "train_attn", "train_unembed") if k in lora}
            if "alpha" in lora:
                kwargs["lora_alpha"] = lora["alpha"]
            if args.get("user_metadata"):
                kwargs["user_metadata"] = args["user_metadata"]
            tc = sc.create_training_client(arg(args, "base_model"), lora_rank=int(arg(args, "lora_rank")), **kwargs)
            out = self.add_training_client(tc, sc)
            self.client_base[out["client"]] = arg(args, "base_model")
            return out
        if op == "create_base_training_client":
            sc = self.get(self.services, args, "service", "service")
            return self.add_training_client(sc.create_base_training_client(arg(args, "base_model")), sc)
        if op == "resolve_checkpoint_path":  # an instance method that uses no instance state
            cls = self.fw.FiretitanTrainingClient
            return {"path": cls.resolve_checkpoint_path(object.__new__(cls), arg(args, "name"), args.get("source_job_id"))}
        if op == "save_weights_for_sampler":  # a snapshot a deployment can hot-load
            handle = arg(args, "client")
            tc = self.get(self.clients, args, "client", "client")
            r = tc.save_weights_for_sampler_ext(arg(args, "name"), ttl_seconds=args.get("ttl_seconds"))
            self.snapshots[r.path] = (r.snapshot_name, self.client_base.get(handle, ""))
            return {"path": r.path}
        if op == "create_sampling_client":
            path = args.get("path") or None
            snapshot, base_model = self.snapshots.get(path, (None, None)) if path else (None, args.get("base_model"))
            if not base_model:
                raise NotImplementedOp("a sampler of %r: the Fireworks SDK hot-loads snapshots this driver saved" % path)
            sampler = self.deployment_sampler(arg(args, "service"), snapshot, base_model)
            return {"sampler": self.add(self.samplers, "p", sampler)}
        if op == "sample":
            sampler = self.get(self.samplers, args, "sampler", "sampler")
            p = dict(args.get("sampling_params", {}))
            stop = p.pop("stop", None)
            if stop is not None and not all(isinstance(x, str) for x in stop):
                raise NotImplementedOp("the deployment's completions take string stops only")
            kwargs = {k: p[k] for k in ("top_k", "top_p", "seed") if k in p}
            completions = self.loop.run_until_complete(sampler.sample_with_prompt_tokens(
                list(arg(args, "prompt")), n=int(args.get("num_samples", 1)), max_tokens=int(p.get("max_tokens", 16)),
                temperature=float(p.get("temperature", 1.0)), stop=stop, logprobs=True, **kwargs))
            return {"sequences": [{"tokens": c.full_tokens[c.prompt_len:], "logprobs": list(c.sampling_logprobs or []),
                                   "stop_reason": "stop" if c.finish_reason == "stop" else "length"} for c in completions]}
        if op == "compute_logprobs":  # an echoed one-token completion: the prompt's logprobs, training-aligned
            sampler = self.get(self.samplers, args, "sampler", "sampler")
            prompt = list(arg(args, "prompt"))
            c = self.loop.run_until_complete(sampler.sample_with_prompt_tokens(prompt, n=1, max_tokens=1, temperature=1.0,
                                                                               echo=True, logprobs=True))[0]
            return {"logprobs": [None] + list(c.inference_logprobs[:len(prompt) - 1])}
        if op in ("optim_step", "submit_optim_step"):
            tc = self.get(self.clients, args, "client", "client")
            f = tc.optim_step(self.adam(args.get("adam_params", {})),
                              grad_accumulation_normalization=args.get("grad_accumulation_normalization") or None)
            result = lambda: {"metrics": dict(f.result().metrics or {})}
            return result() if op == "optim_step" else self.future(result)
        if op == "save_weights_for_sampler_ext":
            tc = self.get(self.clients, args, "client", "client")
            r = tc.save_weights_for_sampler_ext(arg(args, "name"), checkpoint_type=args.get("checkpoint_type") or None,
                                                ttl_seconds=args.get("ttl_seconds"))
            return {"path": r.path, "snapshot_name": r.snapshot_name}
        if op == "list_checkpoints":
            return {"checkpoints": list(self.get(self.clients, args, "client", "client").list_checkpoints())}
        return super().handle(op, args)


def main():
    try:
        driver = FireworksDriver()
    except ImportError as e:
        print("fireworks_sdk_driver: cannot import %s (%s). Install the Fireworks SDK (pip install fireworks-ai) "
              "into this interpreter or pass --python to kiln conform." % (SDK_MODULE, e), file=sys.stderr, flush=True)
        return 3
    return tinker_sdk_driver.serve(driver)


if __name__ == "__main__":
    sys.exit(main())
