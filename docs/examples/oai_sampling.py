"""Tinker's OpenAI-compatible surface on Kiln through the openai client (README "OpenAI-compatible sampling").

    python oai_sampling.py http://127.0.0.1:8000 [API_KEY]

Needs tinker and openai importable; Kiln's tests run it with each interpreter in KILN_TINKER_PYTHON
that has both.
"""
import sys

import tinker
from openai import OpenAI

BASE = sys.argv[1]
KEY = sys.argv[2] if len(sys.argv) > 2 else "tml-local"

service = tinker.ServiceClient(base_url=BASE, api_key=KEY)
path = service.create_lora_training_client(base_model="Qwen/Qwen3-8B", rank=8).save_weights_for_sampler("oai-demo").result().path

oai = OpenAI(base_url=f"{BASE}/oai/api/v1", api_key=KEY)
print("models:", len(oai.models.list().data))
c = oai.completions.create(model=path, prompt="Hello", max_tokens=8, temperature=0.7)
print("completion usage:", c.usage.prompt_tokens, c.usage.completion_tokens)
chunks = list(oai.chat.completions.create(model=path, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                          stream=True, stream_options={"include_usage": True}))
print("chat stream chunks:", len(chunks), "usage:", chunks[-1].usage.prompt_tokens)
r = oai.chat.completions.create(model="Qwen/Qwen3-8B", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                logprobs=True)
print("chat:", r.choices[0].finish_reason, len(r.choices[0].logprobs.content), "logprobs")
