#!/usr/bin/env python3
"""The conformance driver (conformance/DRIVER.md) for the Fireworks Training SDK, unchanged.

    kiln conform --driver fireworks-sdk [--python PATH]      # the short form
    python3 fireworks_sdk_driver.py                          # what it runs

FiretitanServiceClient / FiretitanTrainingClient from `fireworks.training.sdk`: full-parameter
and LoRA clients, grad_accumulation_normalization, save_weights_for_sampler_ext,
list_checkpoints, resolve_checkpoint_path and the duplicate-client rule, all the SDK's own.
The SDK is never part of this repository: it must already be importable.

Sampling is not driven: the Fireworks SDK samples from a deployment it hot-loads (its
DeploymentSampler), which needs the control plane's deployment endpoints, so `create_sampling_client`
answers not_implemented and the behaviour properties that sample are skipped.
"""
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

    def handle(self, op, args):
        if op == "describe":
            try:
                version = importlib.metadata.version("fireworks-ai")
            except importlib.metadata.PackageNotFoundError:
                version = ""
            return {"name": "fireworks-ai", "version": version, "lacks": []}
        if op == "create_service":
            sc = self.fw.FiretitanServiceClient(base_url=arg(args, "base_url"), api_key=arg(args, "api_key"))
            return {"service": self.add(self.services, "s", sc), "session_id": sc.holder.get_session_id()}
        if op == "create_training_client":
            sc = self.get(self.services, args, "service", "service")
            lora = args.get("lora", {})
            kwargs = {k: lora[k] for k in ("seed", "train_mlp", "train_attn", "train_unembed") if k in lora}
            if "alpha" in lora:
                kwargs["lora_alpha"] = lora["alpha"]
            if args.get("user_metadata"):
                kwargs["user_metadata"] = args["user_metadata"]
            tc = sc.create_training_client(arg(args, "base_model"), lora_rank=int(arg(args, "lora_rank")), **kwargs)
            return self.add_training_client(tc, sc)
        if op == "create_base_training_client":
            sc = self.get(self.services, args, "service", "service")
            return self.add_training_client(sc.create_base_training_client(arg(args, "base_model")), sc)
        if op == "resolve_checkpoint_path":  # an instance method that uses no instance state
            cls = self.fw.FiretitanTrainingClient
            return {"path": cls.resolve_checkpoint_path(object.__new__(cls), arg(args, "name"), args.get("source_job_id"))}
        if op in ("create_sampling_client", "sample", "compute_logprobs", "save_weights_for_sampler"):
            raise NotImplementedOp("the Fireworks SDK samples through a hot-loaded deployment (control plane)")
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
