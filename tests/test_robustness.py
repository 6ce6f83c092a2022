"""Nothing lost, no tracebacks: one test per defect of issue 19, each failing before its fix.

Outputs that are inputs are refused before any work; unreadable input and unwritable
outputs are one-line errors; writes keep the mode a plain write gives; Ctrl-C stops a
pool run at once with exit code 130, no worker left and nothing written.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonlab.formats.csvio import DataError, read_rows
from reasonlab.formats.files import OutputError, atomic_write, check_outputs

REPO = Path(__file__).resolve().parents[1]
NUMERAL = (
    "In Alice's Wonderland, numbers are secretly converted into a different numeral system. "
    "Some examples are given below:\n11 -> XI\n94 -> XCIV\n"
    "Now, write the number {n} in the Wonderland numeral system."
)


def _write_csv(path: Path, rows: list[dict], columns=("id", "prompt", "answer")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A small gold CSV, predictions, SFT-like JSONL, a recipe and an adapter-like folder."""
    gold = _write_csv(
        tmp_path / "gold.csv",
        [{"id": str(n), "prompt": NUMERAL.format(n=n), "answer": "?"} for n in (3, 38, 99)],
    )
    preds = _write_csv(tmp_path / "pred.csv", [{"id": "3", "answer": "III"}], ("id", "answer"))
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text('{"id": "3", "sample": 0, "output": "\\\\boxed{III}"}\n')
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("real: [gold.csv]\ngenerated: {n: 0}\n")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (adapter / name).write_bytes(b"trained weights, not to be lost")
    return {"gold": gold, "preds": preds, "outputs": outputs, "recipe": recipe, "adapter": adapter}


# --- 1. an output that is an input is refused, before any work ---------------------------

# (arguments, the input the command would have destroyed)
SAME_FILE = {
    "solve X -o X": (lambda f: ["solve", f["gold"], "-o", f["gold"]], "gold"),
    "classify X -o X": (lambda f: ["classify", f["gold"], "-o", f["gold"]], "gold"),
    "traces X -o X": (lambda f: ["traces", f["gold"], "-o", f["gold"]], "gold"),
    "audit X -o X": (lambda f: ["audit", f["gold"], "-o", f["gold"]], "gold"),
    "score --per-row GOLD": (
        lambda f: ["score", f["preds"], "--gold", f["gold"], "--per-row", f["gold"]],
        "gold",
    ),
    "score --json PRED": (
        lambda f: ["score", f["preds"], "--gold", f["gold"], "--json", f["preds"]],
        "preds",
    ),
    "dataset build R -o R": (
        lambda f: ["dataset", "build", f["recipe"], "-o", f["recipe"]],
        "recipe",
    ),
    "dataset build: the output is a real CSV": (
        lambda f: ["dataset", "build", f["recipe"], "-o", f["gold"]],
        "gold",
    ),
    "export DIR -o DIR": (lambda f: ["export", f["adapter"], "-o", f["adapter"]], "adapter"),
    "pack DIR -o DIR/adapter_model.safetensors": (
        lambda f: ["pack", f["adapter"], "-o", f["adapter"] / "adapter_model.safetensors"],
        "adapter",
    ),
    "distill --gold G -o G": (
        lambda f: ["distill", f["outputs"], "--gold", f["gold"], "-o", f["gold"]],
        "gold",
    ),
    "vote --rows GOLD": (
        lambda f: ["vote", f["outputs"], "--gold", f["gold"], "--rows", f["gold"]],
        "gold",
    ),
    "report -o OUTPUTS": (
        lambda f: ["report", f["outputs"], "--gold", f["gold"], "-o", f["outputs"]],
        "outputs",
    ),
    "eval X -o X": (
        lambda f: ["eval", f["gold"], "--base", f["adapter"], "--backend", "hf", "-o", f["gold"]],
        "gold",
    ),
    "a link to the input": (
        lambda f: ["solve", f["gold"], "-o", _link(f["gold"])],
        "gold",
    ),
}


def _link(target: Path) -> Path:
    link = target.with_name("link-to-" + target.name)
    link.symlink_to(target)
    return link


def _snapshot(path: Path) -> dict[str, bytes]:
    paths = sorted(path.iterdir()) if path.is_dir() else [path]
    return {p.name: p.read_bytes() for p in paths}


@pytest.mark.parametrize("case", list(SAME_FILE))
def test_an_output_that_is_an_input_is_refused(cli, files, case):
    make_args, protected = SAME_FILE[case]
    before = _snapshot(files[protected])
    result = cli(*make_args(files), expect=1)
    assert "is also an input" in result.output and "Traceback" not in result.output
    assert _snapshot(files[protected]) == before


def test_a_hard_link_is_the_same_file(tmp_path):
    data = tmp_path / "a.csv"
    data.write_text("id\n1\n")
    os.link(data, tmp_path / "b.csv")
    with pytest.raises(OutputError, match="is also an input"):
        check_outputs([tmp_path / "b.csv"], inputs=[data])


def test_two_outputs_on_one_path_are_refused(cli, files, tmp_path):
    out = tmp_path / "same.csv"
    result = cli(
        "score", files["preds"], "--gold", files["gold"], "--per-row", out, "--json", out, expect=1
    )
    assert "two different outputs" in result.output


# --- 2. input that is not UTF-8: one line naming the file, the byte and the line ---------


@pytest.mark.parametrize("command", ["classify", "solve", "score"])
def test_a_csv_that_is_not_utf8_is_one_line(cli, tmp_path, command):
    data = tmp_path / "latin1.csv"
    data.write_bytes("id,prompt,answer\n1,Caf\u00e9 au lait,x\n".encode("latin-1"))
    args = {
        "classify": ["classify", data],
        "solve": ["solve", data, "-o", tmp_path / "p.csv"],
        "score": ["score", data, "--gold", data],
    }[command]
    result = cli(*args, expect=1)
    message = result.output.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert str(data) in message.replace("\n", "") and "byte 0xe9 at offset 22 (line 2)" in message


# --- 3. an output folder that cannot be written: said before the work -------------------


@pytest.fixture
def locked_dir(tmp_path):
    """A folder nobody can create files in (chmod for users; the immutable flag for root)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    elif (
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode
        == 0
    ):
        undo = ["chattr", "-i", str(folder)]
    else:
        pytest.skip("cannot make a folder unwritable here (root without chattr +i)")
    try:
        (folder / "probe").touch()
        pytest.skip("the folder stayed writable")
    except OSError:
        pass
    yield folder
    subprocess.run(undo, check=True)


@pytest.mark.parametrize("command", ["solve", "traces", "score --per-row", "pack"])
def test_an_unwritable_output_fails_before_the_work(cli, files, locked_dir, command):
    out = locked_dir / "out.file"
    args = {
        "solve": ["solve", files["gold"], "-o", out],
        "traces": ["traces", files["gold"], "-o", out],
        "score --per-row": ["score", files["preds"], "--gold", files["gold"], "--per-row", out],
        "pack": ["pack", files["adapter"], "-o", out],
    }[command]
    result = cli(*args, expect=1)
    assert f"{out}: cannot be created: {locked_dir} is not writable" in " ".join(
        result.output.split()
    )
    assert "solver results" not in result.output  # refused before solving


def test_os_errors_during_a_command_are_one_line(capsys):
    import typer

    from reasonlab.cli.common import user_errors

    with pytest.raises(typer.Exit), user_errors():
        raise PermissionError(13, "Permission denied", "/out/pred.csv")
    assert capsys.readouterr().err.strip() == "error: /out/pred.csv: Permission denied"


@pytest.mark.parametrize(
    ("path_kind", "message"),
    [("folder", "is a folder, expected a file path"), ("under a file", "is not a folder")],
)
def test_an_output_path_that_cannot_be_a_file(tmp_path, path_kind, message):
    blocker = tmp_path / "blocker"
    if path_kind == "folder":
        blocker.mkdir()
        out = blocker
    else:
        blocker.write_text("x")
        out = blocker / "out.csv"
    with pytest.raises(OutputError, match=message):
        check_outputs([out])


# --- 4. Ctrl-C in a pool run: exit 130 at once, no worker left, nothing written ----------


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # an orphaned zombie has exited


@pytest.fixture(scope="module")
def slow_csv(tmp_path_factory) -> Path:
    """Cryptarithm rows: tens of milliseconds each, so a 2-worker run lasts seconds."""
    from reasonlab.data.generate import generate_rows

    path = tmp_path_factory.mktemp("sigint") / "slow.csv"
    return _write_csv(path, generate_rows("cryptarithm", 400, seed=1))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker pids from /proc")
@pytest.mark.parametrize(
    ("command", "delay"), [("solve", 0.3), ("solve", 1.5), ("dataset build", 0.8)]
)
def test_ctrl_c_stops_a_pool_run_at_once(slow_csv, tmp_path, command, delay):
    out = tmp_path / "out" / "result.file"
    if command == "solve":
        args = ["solve", str(slow_csv), "-o", str(out), "--workers", "2"]
    else:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"real: [{slow_csv}]\ngenerated: {{n: 0}}\n")
        args = ["dataset", "build", str(recipe), "-o", str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "reasonlab", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(process.pid)) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.05)
        time.sleep(delay)  # workers mid-chunk
        assert process.poll() is None, "finished before the interrupt: make the input slower"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
        started = time.monotonic()
        process.wait(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    stderr = process.stderr.read().decode()
    assert process.returncode == 130, stderr
    assert elapsed < 5, f"{elapsed:.1f} s to stop"
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the run"
    assert "Traceback" not in stderr, stderr
    assert not out.parent.exists() or not any(out.parent.iterdir()), list(out.parent.iterdir())


# --- 5. written files get the mode a plain write gives ----------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_keep_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "a.txt") as f:
            f.write("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert plain.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rewriting_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_write(path) as f:
        f.write("new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o640


def test_cli_outputs_are_world_readable_under_umask_022(cli, files, tmp_path):
    old = os.umask(0o022)
    try:
        cli("solve", files["gold"], "-o", tmp_path / "pred.csv")
        cli("score", files["preds"], "--gold", files["gold"], "--json", tmp_path / "s.json")
    finally:
        os.umask(old)
    for name in ("pred.csv", "s.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_writing_through_a_link_keeps_the_link(tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink() and target.read_text() == "new"


# --- 6. messages that point the right way ------------------------------------------------


def test_verify_with_a_csv_as_config_says_so(cli, files):
    pytest.importorskip("transformers")
    zip_path = files["adapter"].parent / "s.zip"
    import zipfile

    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(
            "adapter_config.json",
            '{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": []}',
        )
        zf.writestr("adapter_model.safetensors", b"")
    result = cli("verify", zip_path, "--config", files["gold"], expect=1)
    assert f"{files['gold']}: not a model config.json (not valid JSON" in " ".join(
        result.output.split()
    )


@pytest.mark.parametrize(
    "args",
    [
        lambda f: ["classify", f["adapter"]],
        lambda f: ["solve", f["adapter"], "-o", f["adapter"].parent / "p.csv"],
        lambda f: ["vote", f["adapter"], "--gold", f["gold"]],
        lambda f: ["dataset", "build", f["adapter"], "-o", f["adapter"].parent / "o.jsonl"],
    ],
)
def test_a_folder_where_a_file_is_expected_says_so(cli, files, args):
    result = cli(*args(files), expect=1)
    assert f"{files['adapter']}: is a folder, expected a" in " ".join(result.output.split())


# (file contents, the line the error must cite): the record starts on that line
MULTILINE = [
    ('id,prompt\n1,"a\nb"\n1,"c\nd"\n', "duplicate id '1' (lines 2 and 4)"),
    ('id,prompt\n1,"a\nb\nc"\n ,"d\ne"\n', "line 5 has an empty id"),
    ('id,prompt\n1,"a\nb",x\n', "line 2 has more fields"),
    ('id,prompt\n\n1,a\n\n1,"b\nc"\n', "duplicate id '1' (lines 3 and 5)"),
]


@pytest.mark.parametrize(("content", "message"), MULTILINE)
def test_csv_errors_cite_the_first_line_of_a_record(tmp_path, content, message):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_rows(path, required=("id", "prompt"))
    assert message in str(err.value)
