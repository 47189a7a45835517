"""The Fireworks flow against Kiln with the real Fireworks SDK (README "The Fireworks flow").

    python fireworks_flow.py http://127.0.0.1:8000 [API_KEY]

TrainerJobManager.create_and_wait → FiretitanServiceClient → WeightSyncer.save_and_hotload (a base
snapshot, then a delta on it) → DeploymentSampler → list_checkpoints → promote_checkpoint → delete.
Needs fireworks-ai (1.2.x) importable; Kiln's tests run it when KILN_FIREWORKS_PYTHON names such an
interpreter. A key starting "tml-" keeps the SDK on httpx (other keys need its pyqwest).
"""
import asyncio
import sys

import tinker
from fireworks.training.sdk import (DeploymentConfig, DeploymentManager, FiretitanServiceClient, TrainerJobConfig,
                                    TrainerJobManager, WeightSyncer)

BASE = sys.argv[1]
KEY = sys.argv[2] if len(sys.argv) > 2 else "tml-local"
MODEL = "accounts/fireworks/models/qwen3-8b"

jobs = TrainerJobManager(api_key=KEY, base_url=BASE)
endpoint = jobs.create_and_wait(TrainerJobConfig(base_model=MODEL, lora_rank=0, learning_rate=1e-4), poll_interval_s=0.2)
print("trainer:", endpoint.job_id, endpoint.base_url)

deploy = DeploymentManager(api_key=KEY, base_url=BASE)
deploy.create_or_get(DeploymentConfig(deployment_id="rl-deploy", base_model=MODEL, hot_load_trainer_job=endpoint.job_name))
deploy.wait_for_ready("rl-deploy", poll_interval_s=0.2)

training = FiretitanServiceClient(base_url=endpoint.base_url, api_key=KEY).create_training_client(
    base_model=MODEL, lora_rank=0)
syncer = WeightSyncer(policy_client=training, deploy_mgr=deploy, deployment_id="rl-deploy", base_model=MODEL,
                      warmup_max_retries=1)
datum = tinker.Datum(model_input=tinker.ModelInput.from_ints([1, 2, 3, 4]),
                     loss_fn_inputs={"target_tokens": [2, 3, 4, 5]})
for step in range(2):
    training.forward_backward([datum], "cross_entropy").result()
    training.optim_step(tinker.AdamParams(learning_rate=1e-4)).result()
    print("hot-loaded", syncer.save_and_hotload(f"step-{step}"))  # step-0: a base snapshot, step-1: a delta on it

sampler = syncer.get_deployment_sampler()
for c in asyncio.run(sampler.sample_with_prompt_tokens([1, 2, 3], n=2, max_tokens=6, logprobs=True)):
    assert len(c.inference_logprobs) == len(c.full_tokens) - c.prompt_len
    print("sampled", c.full_tokens[c.prompt_len:], c.finish_reason)

rows = jobs.list_checkpoints(endpoint.job_id)
print("rows:", [(r["name"].rsplit("/", 1)[1], r["checkpointType"], r["promotable"]) for r in rows])
model = jobs.promote_checkpoint(name=rows[0]["name"], output_model_id="rl-step-0", base_model=MODEL)
print("promoted:", model["name"], model["kind"])
jobs.delete(endpoint.job_id)
print("after delete:", jobs.get(endpoint.job_id)["state"])
