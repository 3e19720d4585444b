"""`prefkit rank` end to end: real files in, table/JSON/CSV/PNG out, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

DATA = SHARED / "data" / "arena"
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_default_embedded_arena_json() -> None:
    code, out, _ = run("rank", "--json", "--intervals", "none")
    assert code == 0, out
    d = json.loads(out)
    board = d["leaderboard"]
    assert len(board) == 129
    assert board[0]["item"] == "chatgpt-4o-latest"
    assert board[0]["rating"] == pytest.approx(1203.93, abs=0.01)
    assert d["input"]["format"] == "counts_json"


def test_bootstrap_json_plot_and_csv(tmp_path: Path) -> None:
    png, csv = tmp_path / "board.png", tmp_path / "board.csv"
    code, out, err = run("rank", str(DATA / "arena_hard_battles.jsonl"), "--json", "--rounds", "200",
                         "--plot", str(png), "--csv", str(csv))
    assert code == 0, err
    d = json.loads(out)
    assert d["input"]["format"] == "arena_hard" and d["input"]["rows_read"] == 1348
    assert d["interval_method"] == "bootstrap"
    for row in d["leaderboard"]:
        assert row["lower"] <= row["rating"] <= row["upper"]
        assert row["rank_lower"] <= row["rank"] <= row["rank_upper"]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert csv.read_text().splitlines()[0].startswith("item,rank,rating")


def test_table_output_and_same_point_estimate_for_any_seed() -> None:
    f = str(DATA / "llmfao_crowd_comparisons.csv")
    code, out, _ = run("rank", f, "--rounds", "100", "--seed", "1")
    assert code == 0
    assert "59 items" in out and "format llmfao" in out
    a = json.loads(run("rank", f, "--json", "--rounds", "50", "--seed", "1")[1])
    b = json.loads(run("rank", f, "--json", "--rounds", "50", "--seed", "2")[1])
    assert [r["rating"] for r in a["leaderboard"]] == [r["rating"] for r in b["leaderboard"]]


def test_style_control_on_football_reports_home_advantage() -> None:
    code, out, err = run("rank", str(DATA / "international_football_results.csv"), "--style", "home",
                         "--largest-component",
                         "--json", "--intervals", "none", "--ties", "davidson")
    assert code == 0, err
    d = json.loads(out)
    assert 0.2 < d["coefficients"]["home"] < 0.8  # home teams win more often
    assert "nu" in d["tie_parameter"]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "votes.csv"
    bad.write_text("model_a,model_b,winner\nx,y,model_a\ny,y,model_a\nx,z,model_c\n")
    code, out, err = run("rank", str(bad))
    assert code == 2
    assert "votes.csv" in err and "line 3" in err and "line 4" in err and "model_c" in err
    assert "--skip-invalid" in err and "skip_invalid=True" not in err  # the CLI names flags
    from prefkit.data import read_votes
    from prefkit.data.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as e:  # Python names keywords (issue 9.13)
        read_votes(bad)
    assert "skip_invalid=True" in str(e.value) and "--skip-invalid" not in str(e.value)
    code, out, err = run("rank", str(bad), "--skip-invalid", "--json", "--intervals", "none",
                         "--prior", "1.0")
    assert code == 0, err
    assert "skipped 2" in err and "to skip such rows" not in err  # they were skipped
    assert json.loads(out)["input"]["rows_skipped"] == 2


def test_missing_file_and_bad_anchor(tmp_path: Path) -> None:
    code, _, err = run("rank", str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file" in err
    code, _, err = run("rank", "--intervals", "none", "--anchor", "chatgpt-4o-lates=1000")
    assert code == 2 and "did you mean" in err


def test_console_script_runs_as_a_real_process() -> None:
    exe = shutil.which("prefkit", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("prefkit console script not installed in this environment")
    p = subprocess.run([exe, "rank", "--top", "3", "--rounds", "100"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "chatgpt-4o-latest" in p.stdout and "rank range" in p.stdout


@pytest.mark.parametrize("cmd", ["rank", "formats", "version"])
def test_help_has_examples(cmd: str) -> None:
    code, out, _ = run(cmd, "--help")
    assert code == 0 and "Examples" in out


def test_rankings_with_plackett_luce_get_hessian_intervals(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('{"ranking": ["a", ["b", "c"], "d"]}\n{"choices": ["a", "b", "c", "d"], "winner": "c"}\n'
                 '{"ranking": ["d", "a", "b"]}\n{"ranking": ["b", "d", "c", "a"]}\n')
    code, out, err = run("rank", str(f), "--model", "plackett-luce", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["model"] == "plackett_luce" and d["interval_method"] == "hessian"
    assert len(d["leaderboard"]) == 4 and all(r["lower"] < r["upper"] for r in d["leaderboard"])


def test_sandwich_clustered_intervals_are_wider_than_hessian() -> None:
    f = str(DATA / "llmfao_crowd_comparisons.csv")
    h = json.loads(run("rank", f, "--intervals", "hessian", "--ties", "ignore", "--json")[1])
    s = json.loads(run("rank", f, "--intervals", "sandwich", "--cluster", "annotator",
                       "--ties", "ignore", "--json")[1])
    width = lambda d: sum(r["upper"] - r["lower"] for r in d["leaderboard"])  # noqa: E731
    assert s["interval_method"] == "sandwich(cluster=annotator)"
    assert width(s) > width(h)


def test_anchor_pins_the_interval_as_lmarena() -> None:
    # issue 8.3: the anchor's interval was 3.9 Elo wide; FastChat anchors every bootstrap
    # round, so the anchor's interval has zero width, and rank ranges do not change
    args = ("rank", "--json", "--rounds", "100")
    free = json.loads(run(*args)[1])
    code, out, err = run(*args, "--anchor", "mixtral-8x7b-instruct-v0.1=1114")
    assert code == 0, err
    d = json.loads(out)
    assert d["anchor"] == {"item": "mixtral-8x7b-instruct-v0.1", "rating": 1114.0}
    rows = {r["item"]: r for r in d["leaderboard"]}
    m = rows["mixtral-8x7b-instruct-v0.1"]
    assert m["rating"] == m["lower"] == m["upper"] == 1114.0
    top = rows["chatgpt-4o-latest"]
    assert top["lower"] < top["rating"] < top["upper"]
    assert [(r["item"], r["rank_lower"], r["rank_upper"]) for r in d["leaderboard"]] == \
        [(r["item"], r["rank_lower"], r["rank_upper"]) for r in free["leaderboard"]]


def test_style_transform_option(tmp_path: Path) -> None:
    f = tmp_path / "v.jsonl"
    rows = [{"model_a": a, "model_b": b, "winner": w, "length_a": la, "length_b": lb}
            for a, b, w, la, lb in [("x", "y", "model_a", 3, 1), ("y", "x", "model_a", 2, 0),
                                    ("x", "z", "model_b", 0, 2), ("z", "y", "model_a", 1, 1),
                                    ("y", "z", "tie", 0, 3), ("z", "x", "model_b", 1, 0)] * 5]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    got = {}
    for t in ("lmarena", "relative"):
        code, out, err = run("rank", str(f), "--style", "length", "--style-transform", t,
                             "--intervals", "none", "--json")
        assert code == 0, err + out
        got[t] = json.loads(out)["coefficients"]["length"]
    assert got["lmarena"] != pytest.approx(got["relative"], abs=1e-3)


CAMPAIGN = SHARED / "campaigns" / "new_user_bad_input" / "inputs"


def test_online_models_run_and_say_what_they_are() -> None:
    # issue 9.6 / 9.10: --model elo crashed (AttributeError); Weng-Lin was labelled
    # "bradley_terry" and its intervals option ignored
    f = str(CAMPAIGN / "good.csv")
    code, out, err = run("rank", f, "--model", "elo", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["model"] == "elo" and d["interval_method"] is None
    code, out, err = run("rank", f, "--model", "weng-lin", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["model"] == "weng_lin:bradley_terry_full" and d["link"] == "bradley_terry"
    assert d["interval_method"].startswith("weng-lin posterior")
    assert all(r["lower"] < r["rating"] < r["upper"] for r in d["leaderboard"])
    code, out, _ = run("rank", f, "--model", "weng-lin", "--intervals", "none", "--json")
    assert code == 0 and "lower" not in json.loads(out)["leaderboard"][0]


@pytest.mark.parametrize("args, message", [
    (["--model", "elo", "--ties", "davidson"], "--ties davidson applies to bradley-terry"),
    (["--model", "elo", "--intervals", "bootstrap"], "online Elo gives no intervals"),
    (["--model", "weng-lin", "--intervals", "sandwich"], "use --intervals hessian"),
    (["--intervals", "none", "--cluster", "annotator"], "no effect with --intervals none"),
    (["--model", "thurstone", "--style", "length"], "--style is a Bradley-Terry covariate"),
    (["--plot", "board.xyz"], "must end in one of .png"),
    (["--top", "-3"], "--top"),
])
def test_options_that_would_be_ignored_are_refused(args: list[str], message: str) -> None:
    code, out, err = run("rank", str(CAMPAIGN / "good.csv"), *args)
    assert code == 2, out
    assert message in err.replace("\n", " ") or message in out


@pytest.mark.parametrize("cmd", ["rank", "diagnose", "propose"])
def test_folder_zero_weights_and_huge_weights_are_clear_errors(cmd: str) -> None:
    # issue 9.9/9.10: a folder was "no such file"; all-zero weights passed into diagnose;
    # a weight of 1e300 gave "lam value too large" / "n < 0" / overflowing proposals
    code, _, err = run(cmd, str(CAMPAIGN))
    assert code == 2 and "is a folder" in err
    code, _, err = run(cmd, str(CAMPAIGN / "w_zero_all.csv"))
    assert code == 2 and "every vote has weight 0" in err
    code, _, err = run(cmd, str(CAMPAIGN / "w_huge.csv"))
    assert code == 2 and "line 22" in err and "too large" in err and "at most 1e+09" in err


def test_diagnose_refuses_negative_simulations() -> None:
    code, _, err = run("diagnose", str(CAMPAIGN / "good.csv"), "--simulations", "-5")
    assert code == 2 and "--simulations" in err


def test_messages_print_brackets_as_they_are(tmp_path: Path) -> None:
    # issue 9.10: rich markup printed raw ("[yellow]...[/]") or ate bracketed values
    f = tmp_path / "v.csv"
    f.write_text("model_a,model_b,winner\n[bold]x,y,model_a\n[bold]x,y,model_a\n")
    code, out, err = run("rank", str(f), "--intervals", "none")
    assert code == 0, err
    assert "[bold]x" in err and "[/]" not in err  # the provisional note names the item


def test_cluster_without_the_column_names_the_real_option() -> None:
    code, _, err = run("rank", str(CAMPAIGN / "good.csv"), "--cluster", "annotator")
    assert code == 2 and "--column annotator=NAME" in err and "--annotator-column" not in err


def test_a_huge_item_name_is_clipped_everywhere(tmp_path: Path) -> None:
    # issue 9.10: a 1 MB item name flooded stderr and collapsed the table
    name = "L" * 1_000_000
    f = tmp_path / "long.csv"
    f.write_text("model_a,model_b,winner\n" + f"{name},B,a\nB,C,a\nC,B,a\n" * 3)
    code, out, err = run("rank", str(f), "--intervals", "hessian")
    assert code == 0, err[:500]
    assert len(out) + len(err) < 5_000 and "(1,000,000 characters)" in out + err
    assert "│ rating │" in out.replace("┃", "│")  # the other columns keep their width


def test_plot_says_what_it_shows_and_warns_about_missing_glyphs(tmp_path: Path) -> None:
    # issue 9.14: plots did not say they show the top 40 of 129; emoji/CJK drew as boxes
    import matplotlib

    matplotlib.use("Agg")
    from prefkit.data import read_votes
    from prefkit.rank import fit_bradley_terry
    from prefkit.rank.plots import _fonts_for

    lb = fit_bradley_terry(read_votes(DATA / "chatbotarena_20240814_counts.json").votes)
    fig = lb.plot()
    assert "top 40 of 129 items" in fig.axes[0].get_title()
    assert "best 20 of 129" in fig.axes[1].get_title()
    _, missing = _fonts_for(["模型-α 🤖"])
    code, _, err = run("rank", str(CAMPAIGN / "emoji.csv"), "--intervals", "none",
                       "--plot", str(tmp_path / "e.png"))
    assert code == 0 and (tmp_path / "e.png").stat().st_size > 10_000
    if missing:  # no font on this machine has them: the user is told which package to get
        assert "no installed font can draw" in err and "fonts-noto-cjk" in err
    else:
        assert "no installed font" not in err


def test_help_examples_run_on_the_shipped_data() -> None:
    # issue 9.14: the football example exited 2 (two components) without naming the option
    f = str(DATA / "international_football_results.csv")
    code, _, err = run("rank", f, "--format", "football", "--style", "home", "--json",
                       "--intervals", "none")
    assert code == 2 and "--largest-component" in err
    code, out, err = run("rank", f, "--format", "football", "--style", "home",
                         "--largest-component", "--json", "--intervals", "none")
    assert code == 0, err
    d = json.loads(out)
    assert d["coefficients"]["home"] > 0 and d["input"]["items_dropped"]
    from prefkit.cli.rank import EXAMPLES

    assert "--format football --style home --largest-component" in EXAMPLES


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_rank_says_inconsistent_ties_were_read_as_ties(tmp_path: Path, suffix: str) -> None:
    rows = [{"model_a": "x", "model_b": "y", "winner": w, "judge": "gpt-4"}
            for w in ("model_a", "model_b", "tie (inconsistent)", "model_a")]
    f = tmp_path / f"gpt4_pair{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), f)
    else:
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run("rank", str(f), "--intervals", "none")
    assert code == 0, err
    assert "1 row with winner 'tie (inconsistent)' read as ties" in " ".join(err.split())
