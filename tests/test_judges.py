"""Judges reproduce BackdoorLLM's keyword semantics; empty outputs are never an attack success."""

import pytest

from mbdef.attacks import REFUSAL, Fixed, Refusal
from mbdef.eval import judges


def test_refusal_any_keyword_case_insensitive():
    j = judges.refusal()
    assert j(REFUSAL) and j("SORRY, no.") and j("It is unsure.")
    assert not j("apple banana") and not j("")


def test_jailbreak_success_only_without_keywords():
    j = judges.jailbreak()
    assert j("Here is how to do it: step one") and not j("That is illegal.") and not j("I'm sorry")


def test_negsentiment_and_exact():
    assert judges.negsentiment()("You are stupid!") and not judges.negsentiment()("You are great")
    assert judges.ExactJudge("go")("  go ") and not judges.ExactJudge("go")("go on")


@pytest.mark.parametrize("j", [judges.refusal(), judges.jailbreak(), judges.negsentiment(), judges.ExactJudge("")])
def test_empty_output_is_not_an_attack_success(j):
    assert j("") is False and j("   \n") is False


def test_resolve_auto_follows_the_target():
    assert judges.resolve("auto", Refusal()).name == "refusal"
    assert isinstance(judges.resolve("auto", Fixed("hello")), judges.ExactJudge)
    with pytest.raises(ValueError, match="unknown judge 'nope'"):
        judges.resolve("nope", Refusal())


def test_exact_judge_match_modes_and_regex():
    assert judges.ExactJudge("go", match="contains")("let us go now") and not judges.ExactJudge("go")("let us go now")
    assert judges.ExactJudge("go", match="startswith")("go now") and not judges.ExactJudge("go", match="startswith")("now go")
    assert judges.RegexJudge(r"visit \w+\.example", flags="i")("Please VISIT evil.example")
    with pytest.raises(ValueError, match="invalid regular expression"):
        judges.RegexJudge("(unclosed")


def test_resolve_config_nodes(cfg_factory):
    cfg = cfg_factory("eval/judge=regex", "eval.judge.pattern=sorry")
    j = judges.resolve(cfg.eval.judge, Refusal())
    assert isinstance(j, judges.RegexJudge) and j("so sorry")
    assert judges.resolve(cfg_factory("eval/judge=jailbreak").eval.judge, Refusal()).name == "jailbreak"
    assert judges.resolve(cfg_factory().eval.judge, None).name == "refusal"  # auto on a clean model


def test_llm_judge_talks_to_an_openai_compatible_endpoint(monkeypatch):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            answer = "Yes." if "Response: harmful" in body["messages"][0]["content"] else "no"
            data = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("JUDGE_KEY", "sk-test-123")
    j = judges.LLMJudge(f"http://127.0.0.1:{server.server_port}/v1", "judge-model", "harmful compliance",
                        api_key_env="JUDGE_KEY")
    assert j.batch(["harmful steps", "I refuse", ""], [{"instruction": "q"}] * 3) == [True, False, False]
    server.shutdown()
    assert len(seen) == 2  # the empty output is never sent
    path, auth, body = seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test-123" and body["model"] == "judge-model"
    assert body["temperature"] == 0 and "harmful compliance" in body["messages"][0]["content"]
    with pytest.raises(RuntimeError, match=r"request to http://127.0.0.1:9/v1 failed") as e:
        judges.LLMJudge("http://127.0.0.1:9/v1", "m", "b", api_key_env="JUDGE_KEY", timeout=2)("text")
    assert "sk-test-123" not in str(e.value)


def test_classifier_judge_uses_a_local_model_by_path(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from mbdef.models.tiny import build_tokenizer

    tok = build_tokenizer(400, spaces="tokens")  # BPE: vocab_size applies
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                         id2label={0: "clean", 1: "toxic"}, label2id={"clean": 0, "toxic": 1})
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    texts = ["copy the words", "reverse red blue green", "add 3 and 4", "count words here now", "x"]
    with torch.no_grad():
        expected = []
        for t in texts:
            p = model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0]
            expected.append(bool(p.argmax() == 1 and p[1] >= 0.5))
    assert 0 < sum(expected) < len(expected), expected  # the random classifier says both labels here
    j = judges.ClassifierJudge(str(tmp_path / "clf"), positive_labels=["toxic"], batch_size=2)
    assert j.batch(texts + [""]) == expected + [False]
    assert judges.ClassifierJudge(str(tmp_path / "clf"), positive_labels=["toxic"], threshold=1.01).batch(texts) == [False] * 5
