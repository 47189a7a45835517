#!/usr/bin/env python3
"""One-bug versions of a real tinker SDK, to prove `kiln conform` fails a broken Python client.

    python3 tinker_sdk_mutants.py NAME [--module tinker]

imports the SDK, breaks it with the monkeypatch NAME (below), then runs tinker_sdk_driver.py
on it. `make test` runs each when the SDK is importable and requires the property named beside
it to fail (conformance_test.cpp, TinkerSdkTest). `--list` prints them as JSON.
"""
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinker_sdk_driver  # noqa: E402


def drop_ttl(sdk):
    """save_state forgets ttl_seconds: the checkpoint never expires."""
    original = sdk.TrainingClient.save_state

    @functools.wraps(original)
    def save_state(self, name, ttl_seconds=None, *args, **kwargs):
        return original(self, name, *args, **kwargs)
    sdk.TrainingClient.save_state = save_state


def forward_accumulates(sdk):
    """forward is sent as forward_backward: gradients pile up where they must not."""
    sdk.TrainingClient.forward = sdk.TrainingClient.forward_backward


def load_drops_optimizer(sdk):
    """load_state_with_optimizer loads the weights only."""
    sdk.TrainingClient.load_state_with_optimizer = sdk.TrainingClient.load_state


def default_learning_rate(sdk):
    """optim_step sends the default Adam parameters, whatever it is given."""
    original = sdk.TrainingClient.optim_step

    @functools.wraps(original)
    def optim_step(self, adam_params, *args, **kwargs):
        return original(self, type(adam_params)(), *args, **kwargs)
    sdk.TrainingClient.optim_step = optim_step


def sampler_on_base_weights(sdk):
    """create_sampling_client samples the base model, whatever checkpoint it is given."""
    original = sdk.ServiceClient.create_sampling_client
    created = sdk.ServiceClient.create_lora_training_client
    bases = []

    @functools.wraps(created)
    def create_lora_training_client(self, base_model, *args, **kwargs):
        bases.append(base_model)
        return created(self, base_model, *args, **kwargs)

    @functools.wraps(original)
    def create_sampling_client(self, model_path=None, base_model=None, *args, **kwargs):
        if model_path and bases:
            model_path, base_model = None, bases[-1]
        return original(self, model_path=model_path, base_model=base_model, *args, **kwargs)
    sdk.ServiceClient.create_lora_training_client = create_lora_training_client
    sdk.ServiceClient.create_sampling_client = create_sampling_client


# name -> (monkeypatch, the property that must catch it)
MUTANTS = {
    "drop_ttl": (drop_ttl, "checkpoints.ttl_expiry"),
    "forward_accumulates": (forward_accumulates, "accumulation.until_optim_step"),
    "load_drops_optimizer": (load_drops_optimizer, "checkpoints.resume_with_optimizer"),
    "default_learning_rate": (default_learning_rate, "numbers.oracle_agreement"),
    "sampler_on_base_weights": (sampler_on_base_weights, "behaviour.overfit_and_recite"),
}


def main():
    args = sys.argv[1:]
    if args == ["--list"]:
        print(json.dumps({name: {"bug": patch.__doc__, "property": prop} for name, (patch, prop) in MUTANTS.items()}))
        return 0
    if not args or args[0] not in MUTANTS:
        print("usage: tinker_sdk_mutants.py NAME [--module MODULE] | --list; NAME is one of " + ", ".join(MUTANTS),
              file=sys.stderr)
        return 2
    name = args.pop(0)
    module = args[args.index("--module") + 1] if "--module" in args else "tinker"
    try:
        sdk = __import__(module)
    except ImportError as e:
        print("tinker_sdk_mutants: cannot import '%s' (%s)" % (module, e), file=sys.stderr)
        return 3
    MUTANTS[name][0](sdk)
    sys.argv = [sys.argv[0]] + args
    return tinker_sdk_driver.main()


if __name__ == "__main__":
    sys.exit(main())
