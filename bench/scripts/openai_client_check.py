"""Checks a running vllm-sim replica with the official `openai` Python client.

    python3 -m venv /tmp/oai && /tmp/oai/bin/pip install openai
    vllm-sim --port 8001 --served-model-name qwen &
    /tmp/oai/bin/python bench/scripts/openai_client_check.py http://127.0.0.1:8001 qwen

Exercises completions and chat, streaming and not, usage chunks, a 404 for an unknown
model and a 400 for a bad field; prints one line per check and exits non-zero on failure.
"""

import sys

import openai


def main() -> int:
    base, model = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
    failures = 0

    def check(name, cond, detail=""):
        nonlocal failures
        print(f"{'ok  ' if cond else 'FAIL'} {name} {detail}")
        failures += 0 if cond else 1

    models = client.models.list()
    check("models.list", [m.id for m in models.data] == [model], str([m.id for m in models.data]))

    c = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                  extra_body={"ignore_eos": True})
    check("completions", c.usage.completion_tokens == 8 and c.choices[0].finish_reason == "length",
          repr(c.choices[0].text))

    chunks = list(client.completions.create(model=model, prompt="Once upon a time", max_tokens=5,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True}))
    text_chunks = [ch for ch in chunks if ch.choices and ch.choices[0].text]
    check("completions stream", len(text_chunks) == 5 and chunks[-1].usage.completion_tokens == 5,
          f"{len(chunks)} chunks")

    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}],
                                       max_tokens=6, extra_body={"ignore_eos": True})
    check("chat", r.choices[0].message.role == "assistant" and r.usage.completion_tokens == 6,
          repr(r.choices[0].message.content))

    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, stream=True, extra_body={"ignore_eos": True})
    deltas = [ch.choices[0].delta for ch in stream if ch.choices]
    content = "".join(d.content or "" for d in deltas)
    check("chat stream", deltas[0].role == "assistant" and len(content.split()) == 4, repr(content))

    raw = client.completions.with_raw_response.create(model=model, prompt="x " * 100, max_tokens=1)
    check("x-sim-cached-tokens header", raw.headers.get("x-sim-cached-tokens") is not None,
          raw.headers.get("x-sim-cached-tokens"))

    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        check("unknown model -> 404", False)
    except openai.NotFoundError as e:
        check("unknown model -> 404", e.status_code == 404, str(e.body))

    try:
        client.completions.create(model=model, prompt="x", max_tokens=1, n=2)
        check("n=2 -> 400", False)
    except openai.BadRequestError as e:
        check("n=2 -> 400", e.status_code == 400, str(e.body))

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
