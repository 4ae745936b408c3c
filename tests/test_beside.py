"""train_beside: a recipe's other seeds trained in a second process, in the folders train_recipe uses."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from vitcourse import beside as B
from vitcourse._io import atomic_write_json
from vitcourse.data import synthetic
from vitcourse.recipes import Recipe, recipe_run_dir, train_recipe

RECIPE = Recipe("vit_smoke_patch8_32", epochs=2, batch_size=32, lr=2e-3, warmup_epochs=0.5, augment=dict(flip=True))


@pytest.fixture
def train(monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    monkeypatch.delenv("VITCOURSE_REHEARSAL", raising=False)
    monkeypatch.setattr(B, "POLL_S", 0.2)
    return synthetic("train", n=64, num_classes=4)


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def _weights(model):
    return [t.clone() for t in model.state_dict().values()]


def test_the_other_process_trains_the_seeds_as_train_recipe_would_here(train, tmp_path, two_threads):
    """Seeds 1 and 2 in the other process, on one thread; then train_recipe loads each run (no training),
    and its weights equal those of the same seed trained in this process on one thread."""
    with B.train_beside(RECIPE, train, name="ch", seeds=(1, 2), device="cpu", root=tmp_path) as others:
        assert others.started and others.other_threads == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2                       # given back after the with
    others.wait(progress=False)
    assert not others.started
    torch.set_num_threads(1)
    for seed in (1, 2):
        folder = recipe_run_dir(RECIPE, train, name="ch", seed=seed, root=tmp_path)
        assert not (folder / B.LOCK).exists() and "finished" in (folder / B.LOG).read_text()
        written = (folder / "checkpoint.pt").stat().st_mtime_ns
        loaded, history = train_recipe(RECIPE, train, name="ch", seed=seed, root=tmp_path, progress=False,
                                       device="cpu")
        assert [e["epoch"] for e in history.epochs] == [1, 2]
        assert (folder / "checkpoint.pt").stat().st_mtime_ns == written          # loaded, not trained again
        here, _ = train_recipe(RECIPE, train, name="ch", seed=seed, root=tmp_path / "here", progress=False,
                               device="cpu")
        assert all(torch.equal(a, b) for a, b in zip(_weights(loaded), _weights(here)))


def test_nothing_starts_where_it_cannot_help(train, tmp_path, two_threads, monkeypatch):
    """A GPU, one thread, a rehearsal, or runs already finished: nothing starts and wait returns at once."""
    assert not B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cuda", root=tmp_path).started
    torch.set_num_threads(1)
    assert not B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path).started
    torch.set_num_threads(2)
    monkeypatch.setenv("VITCOURSE_REHEARSAL", "1")
    monkeypatch.setenv("VITCOURSE_PROFILE", "gpu")           # a rehearsal rehearses the gpu profile
    assert not B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path).started
    monkeypatch.delenv("VITCOURSE_REHEARSAL")
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    train_recipe(RECIPE, train, name="ch", seed=1, root=tmp_path, progress=False, device="cpu")
    done = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    assert not done.started and done.folders == {}
    done.wait()
    assert "nothing started: every seed's run is finished" in repr(done)


def test_a_live_lock_is_waited_for_and_train_recipe_refuses_to_train_beside_it(train, tmp_path, two_threads):
    """A run another live process holds is not started again; train_recipe on it is a clear error; wait()
    returns when that process has ended, and its lock is removed."""
    folder = recipe_run_dir(RECIPE, train, name="ch", seed=1, root=tmp_path)
    folder.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    atomic_write_json(B._identity(holder.pid), folder / B.LOCK)
    try:
        others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
        assert others.started and others.process is None and set(others.holders) == {holder.pid}
        assert "started earlier" in repr(others)
        with pytest.raises(RuntimeError, match=rf"process {holder.pid}.*\.wait\(\)"):
            train_recipe(RECIPE, train, name="ch", seed=1, root=tmp_path, progress=False, device="cpu")
    finally:
        holder.kill()
        holder.wait()
    others.wait(progress=False)
    assert not (folder / B.LOCK).exists()


def test_stale_locks_do_not_stop_a_start(train, tmp_path, two_threads):
    """A lock whose process has ended, or whose id now names another process (another start time, as
    after a restart), or that was written on another machine, is stale."""
    folder = recipe_run_dir(RECIPE, train, name="ch", seed=1, root=tmp_path)
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        for lock in (B._identity(dead.pid), {**B._identity(alive.pid), "started": "another boot:1"},
                     {**B._identity(alive.pid), "host": "another-machine"}, {**B._identity(alive.pid), "pid": 0}):
            atomic_write_json(lock, folder / B.LOCK)
            assert B._lock_holder(folder) is None, lock
        atomic_write_json(B._identity(alive.pid), folder / B.LOCK)
        assert B._lock_holder(folder) == alive.pid                          # the same lock, fresh
    finally:
        alive.kill()
        alive.wait()
    atomic_write_json(B._identity(dead.pid), folder / B.LOCK)
    others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    assert others.process is not None
    others.wait(progress=False)
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == RECIPE.epochs


def test_threads_come_back_when_the_notebooks_training_raises(train, tmp_path, two_threads):
    others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with others:
            assert torch.get_num_threads() == 1
            raise KeyboardInterrupt
    assert torch.get_num_threads() == 2
    others.wait(progress=False)


def test_on_epoch_end_gives_the_threads_back_once_the_other_process_has_ended(train, tmp_path, two_threads):
    others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    assert others.process is not None
    with others:
        assert torch.get_num_threads() == 1
        others.wait(progress=False)
        others.on_epoch_end(1, None)                 # as fit calls it after an epoch
        assert torch.get_num_threads() == 2 and others.own_threads == 2
        others.on_epoch_end(2, None)
        others.on_epoch_end(3, None)
    assert torch.get_num_threads() == 2
    # Epoch 1 trained on the one thread it was given; the later epochs on both.
    assert others.threads_used() == "1 thread in epoch 1, 2 threads in epochs 2-3"
    # wait() forgets the process, but not that the notebook trained beside it (its timing line says so).
    assert not others.started and others.shared
    assert not B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path).shared


def test_a_second_start_waits_its_turn(train, tmp_path, two_threads):
    """A kernel that holds the runs folder's start lock (here a subprocess) is let finish first: the
    second train_beside looks at the run locks only after the first has released it."""
    released = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, time\n"
         f"f = open({str(tmp_path / '.beside.lock')!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True)\n"
         f"time.sleep(1); open({str(released)!r}, 'w').close(); fcntl.flock(f, fcntl.LOCK_UN); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
        assert released.exists()                     # it could not look before the holder let go
        others.wait(progress=False)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_process_loses_at_most_an_epoch_and_train_recipe_finishes_the_run(train, tmp_path, two_threads,
                                                                                    capsys):
    """SIGKILL in the middle of the run: wait() says so, and train_recipe resumes from the last checkpoint
    to the weights of a run never interrupted (both on one thread)."""
    long = RECIPE.replace(epochs=60)      # far more epochs than the 20-ms poll below can miss
    others = B.train_beside(long, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    ckpt = recipe_run_dir(long, train, name="ch", seed=1, root=tmp_path) / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while B._epochs_done(ckpt) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(others.process.pid, signal.SIGSTOP)     # held where it is, then killed there
    others.process.kill()
    others.wait(progress=False)
    done_when_killed = B._epochs_done(ckpt)
    assert 2 <= done_when_killed < long.epochs
    out = capsys.readouterr().out
    assert "killed by signal 9" in out and "trains what is left of 1 run(s) here" in out
    torch.set_num_threads(1)
    resumed, history = train_recipe(long, train, name="ch", seed=1, root=tmp_path, progress=False, device="cpu")
    assert len(history.epochs) == long.epochs
    whole, _ = train_recipe(long, train, name="ch", seed=1, root=tmp_path / "whole", progress=False, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(whole)))


def test_a_re_run_finds_the_process_even_when_the_notebooks_own_run_is_finished(train, tmp_path, two_threads):
    """The cell run again after seed 0 finished: the live process is waited for (not forgotten), and the
    notebook keeps all its threads."""
    train_recipe(RECIPE, train, name="ch", seed=0, root=tmp_path, progress=False, device="cpu")
    own = recipe_run_dir(RECIPE, train, name="ch", seed=0, root=tmp_path) / "checkpoint.pt"
    folder = recipe_run_dir(RECIPE, train, name="ch", seed=1, root=tmp_path)
    folder.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    atomic_write_json(B._identity(holder.pid), folder / B.LOCK)
    try:
        others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path, own=own)
        assert others.started and set(others.holders) == {holder.pid} and others.own_threads == 2
    finally:
        holder.kill()
        holder.wait()
    others.wait(progress=False)
    assert not others.started and "ended" in repr(others)


def test_nothing_starts_when_the_notebooks_own_run_is_finished(train, tmp_path, two_threads):
    """Then the notebook would only wait: the seeds train where train_recipe is called, on every thread."""
    train_recipe(RECIPE, train, name="ch", seed=0, root=tmp_path, progress=False, device="cpu")
    own = recipe_run_dir(RECIPE, train, name="ch", seed=0, root=tmp_path) / "checkpoint.pt"
    others = B.train_beside(RECIPE, train, name="ch", seeds=(1,), device="cpu", root=tmp_path, own=own)
    assert not others.started and "own run is finished" in repr(others)


def test_a_failing_process_is_reported_with_its_log_and_the_run_is_left_to_train_recipe(train, tmp_path, two_threads,
                                                                                           capsys):
    bad = RECIPE.replace(model_args=dict(no_such_argument=1))
    others = B.train_beside(bad, train, name="ch", seeds=(1,), device="cpu", root=tmp_path)
    assert others.process is not None
    others.wait(progress=False)
    out = capsys.readouterr().out
    assert "exit code 1" in out and "no_such_argument" in out and "trains what is left" in out
    folder = recipe_run_dir(bad, train, name="ch", seed=1, root=tmp_path)
    assert not (folder / B.LOCK).exists() and not (folder / "checkpoint.pt").exists()


@pytest.mark.skipif(os.name != "posix", reason="train_beside starts nothing off POSIX")
def test_alive_tells_a_live_process_from_an_ended_one():
    assert B._alive(os.getpid())
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert not B._alive(ended.pid)


def _trained_alone(seed, threads, steps=6):
    """A small model and the loss after `steps` steps of its own seeded batches, trained on `threads` threads."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    g = torch.Generator().manual_seed(100 + seed)
    batches = [(torch.randn(64, 16, generator=g), torch.randint(0, 4, (64,), generator=g)) for _ in range(steps)]

    def job():
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = torch.get_num_threads()
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item(), seen
    return job


def test_side_by_side_runs_jobs_on_a_share_of_the_threads_with_the_results_of_plain_calls(two_threads):
    alone = [_trained_alone(s, 2)()[0] for s in (0, 1)]
    results = B.side_by_side(_trained_alone(0, 1), _trained_alone(1, 1))
    assert [seen for _, seen in results] == [1, 1] and B.threads_each(2) == 1   # each thread on one of the two
    assert [loss for loss, _ in results] == pytest.approx(alone, rel=1e-5)   # as if called one by one
    assert torch.get_num_threads() == 2                       # given back


def test_side_by_side_runs_in_series_where_threads_cannot_help(two_threads, monkeypatch):
    assert [seen for _, seen in B.side_by_side(_trained_alone(0, 1), _trained_alone(1, 1), device="cuda")] == [2, 2]
    assert B.threads_each(2, "cuda") == 0 and B.threads_each(1) == 0
    monkeypatch.setenv("VITCOURSE_REHEARSAL", "1")
    assert [seen for _, seen in B.side_by_side(_trained_alone(0, 1), _trained_alone(1, 1))] == [2, 2]
    monkeypatch.delenv("VITCOURSE_REHEARSAL")
    torch.set_num_threads(1)
    assert [seen for _, seen in B.side_by_side(_trained_alone(0, 1), _trained_alone(1, 1))] == [1, 1]


def test_side_by_side_raises_a_jobs_error_after_the_others_have_ended(two_threads):
    finished = []

    def fails():
        raise ValueError("bad size")

    def slow():
        time.sleep(0.3)
        finished.append(True)
        return 1
    with pytest.raises(RuntimeError, match="job 0 .*fails") as err:
        B.side_by_side(fails, slow)
    assert isinstance(err.value.__cause__, ValueError) and finished == [True]
    assert torch.get_num_threads() == 2
