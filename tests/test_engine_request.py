"""One typed request per engine: what a front builds is what the engine reads, argument for argument."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dasvit.errors import ConfigError
from dasvit.run.requests import REQUESTS, FocusRequest, RetrainRequest, SearchRequest


@pytest.mark.parametrize(
    "request_",
    [
        SearchRequest("demo", ["search.pts.ratio=0.25", "data.batch_size=8"], Path("runs/x"), "manual"),
        SearchRequest(resume=Path("runs/x"), approve="auto", progress=False),
        RetrainRequest("runs/x", "demo", ["retrain.epochs=2"], Path("runs/x/retrain")),
        RetrainRequest(resume=Path("runs/x"), overrides=["retrain.epochs=8"], progress=False),
        FocusRequest("focus-demo", ["focus.sampler=uniform", "focus.epochs=2"], Path("runs/f")),
        FocusRequest(resume=Path("runs/f"), progress=False),
    ],
)
def test_a_request_survives_the_engine_command_line(request_):
    assert type(request_).parse(request_.argv()) == request_


def test_resolving_fixes_the_run_directory_and_checks_the_config_first(tmp_path):
    from dasvit.errors import RunDirError

    new = SearchRequest("demo", approve="manual").resolved(tmp_path)
    assert new.run_dir.parent == tmp_path and new.run_dir.name.startswith("demo-") and not new.run_dir.exists()
    assert new.config.preset == "demo" and new.config.search.approval == "manual"
    assert new.resolved() is new  # resolved once: the engine in the same process takes it as it is
    with pytest.raises(ConfigError):
        SearchRequest("demo", ["search.lr=-1"]).resolved(tmp_path)
    with pytest.raises(RunDirError, match="does not exist"):
        SearchRequest(resume=tmp_path / "old").resolved()
    search = shutil.copytree(Path(__file__).parent / "recorded_run", tmp_path / "search", ignore=_no_retrain)
    (search / "checkpoint.pt").write_bytes(b"")  # resolving checks that it is there, not what it holds
    assert SearchRequest(resume=search).resolved().run_dir == search
    with pytest.raises(RunDirError, match="drop --preset and --set"):
        SearchRequest(resume=search, overrides=["search.lr=1"]).resolved()
    retrain = RetrainRequest(str(search)).resolved()
    assert retrain.run_dir == search.absolute() / "retrain" and retrain.genotype is not None
    with pytest.raises(RunDirError, match="already holds a run"):
        RetrainRequest(str(Path(__file__).parent / "recorded_run")).resolved()


def _no_retrain(folder, names):
    return ["retrain"] if "retrain" in names else []


def test_a_focus_request_checks_its_space_before_any_directory(tmp_path):
    from dasvit.errors import GenotypeError

    assert REQUESTS["focus"] is FocusRequest and FocusRequest.MODULE == "dasvit.focus"
    new = FocusRequest().resolved(tmp_path)
    assert new.run_dir.parent == tmp_path and new.run_dir.name.startswith("focus-demo-")
    with pytest.raises(ConfigError):
        FocusRequest("focus-demo", ["focus.depths=[]"]).resolved(tmp_path)
    with pytest.raises(GenotypeError):
        FocusRequest("focus-demo", ["focus.base=no/such/cell.json"]).resolved(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_specialized_genotype_retrains_next_to_it_by_default(tmp_path):
    """`dasvit retrain RUN/specialized/423K.json` (and `r` in the TUI's specialize dialog) trains into
    RUN/specialized/423K-retrain, with the focus run it came from; any other genotype file into runs/."""
    run = shutil.copytree(Path(__file__).parent / "recorded_focus_run", tmp_path / "focus-run")
    genotype = run / "specialized" / "423K.json"
    assert RetrainRequest(str(genotype)).resolved(tmp_path / "runs").run_dir == run / "specialized" / "423K-retrain"
    loose = tmp_path / "423K.json"
    shutil.copy(genotype, loose)
    assert RetrainRequest(str(loose), "demo").resolved(tmp_path / "runs").run_dir.parent == tmp_path / "runs"
