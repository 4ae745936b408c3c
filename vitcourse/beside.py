"""A recipe's other seeds trained in a second process while the notebook trains its own (CPU only).

On a CPU, PyTorch spreads every operation of a small model over the cores, and for matrices this
small much of that is overhead: two one-thread runs side by side do more work in all than one
two-thread run (1.2-1.5x on the course's 2-core machine: ``benchmarks/RESULTS.md``, item 6). A
chapter that needs several seeds of one recipe (chapter 03's C3c) starts them here, trains its own
seed on the cores that are left, and waits for them where it needs them::

    with train_beside(R, train_data, name="03_vit", seeds=(1,), device=DEVICE) as others:
        history = fit(model, ...)             # seed 0, on the cores the other process leaves
    ...
    others.wait()                             # then train_recipe(R, ..., seed=1) loads the run

The other process runs ``recipes.train_recipe`` for each seed, so its runs are checkpointed in the
folders ``train_recipe`` uses: an interrupted notebook or a restarted kernel loses nothing, and a
run the process did not finish is resumed by the ``train_recipe`` call that needs it. A lock file
(``beside.pid`` in each run's folder) keeps a second process from starting on a run that one is
already training; ``beside.log`` there holds what the process printed.

Nothing starts (``started`` is False, ``wait`` returns at once and the seeds are trained where
``train_recipe`` is called) on a GPU, in a rehearsal, with a single core, off POSIX, or when every
seed's run is already finished.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from ._io import atomic_write_text

LOCK, LOG = "beside.pid", "beside.log"
POLL_S = 5.0     # how often wait() looks at the other process's checkpoints


def _alive(pid: int) -> bool:
    """Whether a process with this id is running (POSIX: signal 0 only asks; on Linux an ended process
    that its parent has not yet reaped, a zombie, counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # it exists, under another user
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True             # no /proc (macOS): it exists
    return state != "Z"


def _lock_holder(folder: Path) -> int | None:
    """The id of a live process that holds ``folder``'s lock, else None (a stale lock is ignored)."""
    try:
        pid = int((folder / LOCK).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _alive(pid) else None


def _epochs_done(checkpoint: Path) -> int:
    """Finished epochs in a train_recipe checkpoint (0 when there is none yet)."""
    from .checkpoint import read_checkpoint
    try:
        return int(read_checkpoint(checkpoint)["epoch"])
    except (FileNotFoundError, RuntimeError):    # none yet, or being replaced at this instant
        return 0


def _worker(r, train, name, seeds, root, threads, profile_name):
    """The other process: train_recipe for each seed on ``threads`` threads, printing to each run's log."""
    from .recipes import recipe_run_dir, train_recipe
    os.environ["VITCOURSE_PROFILE"] = profile_name    # the run folders are the notebook's
    torch.set_num_threads(threads)
    for seed in seeds:
        folder = recipe_run_dir(r, train, name=name, seed=seed, root=root)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG, "a", buffering=1) as log, redirect_stdout(log), redirect_stderr(log):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} process {os.getpid()}: seed {seed} on {threads} thread(s)")
            try:
                train_recipe(r, train, name=name, seed=seed, root=root, progress=False, device="cpu")
            except BaseException:
                traceback.print_exc()
                sys.exit(1)
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} seed {seed} finished")
        (folder / LOCK).unlink(missing_ok=True)


class Beside:
    """The other process of ``train_beside`` (or none); ``with`` it around the notebook's own training."""

    def __init__(self, r, folders: dict[int, Path], process=None, holder: int | None = None,
                 threads: tuple[int, int] = (0, 0)):
        self.recipe, self.folders, self.process, self.holder = r, folders, process, holder
        self.own_threads, self.other_threads = threads
        self._saved_threads = None

    @property
    def started(self) -> bool:
        """Whether a process (this one's, or an earlier kernel's) is training the seeds."""
        return self.process is not None or self.holder is not None

    def __repr__(self) -> str:
        seeds = ", ".join(map(str, self.folders)) or "none"
        if self.process is not None:
            return (f"Beside(seeds {seeds} in process {self.process.pid} on {self.other_threads} thread(s); "
                    f"this one on {self.own_threads} thread(s))")
        if self.holder is not None:
            return (f"Beside(seeds {seeds} already in process {self.holder}, started earlier; "
                    f"this one on {self.own_threads} thread(s))")
        return f"Beside(seeds {seeds}: nothing started; train_recipe trains them where it is called)"

    def __enter__(self) -> "Beside":
        if self.started:                             # share the cores while both train
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.own_threads)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def _running(self) -> bool:
        if self.process is not None:
            return self.process.is_alive()
        return self.holder is not None and _alive(self.holder)

    def wait(self, progress: bool = True) -> None:
        """Block until the other process has finished, with one progress bar of its epochs. When it
        stopped early (an error: its log's last lines are printed), the ``train_recipe`` call that
        needs a run trains what is left of it."""
        if not self.started:
            return
        from tqdm.auto import tqdm
        total = len(self.folders) * self.recipe.epochs
        done = lambda: sum(min(_epochs_done(f / "checkpoint.pt"), self.recipe.epochs) for f in self.folders.values())
        n = done()
        bar = tqdm(total=total, desc=f"seed(s) {', '.join(map(str, self.folders))} in the other process",
                   unit="epoch", disable=not progress, initial=n)
        while n < total and self._running():        # all finished: a recycled pid is not waited for
            if self.process is not None:
                self.process.join(POLL_S)               # returns as soon as it ends
            else:
                time.sleep(POLL_S)
            n = done()
            bar.update(n - bar.n)
        bar.close()
        if self.process is not None:
            self.process.join()
            code, self.process = self.process.exitcode, None
            if code != 0:
                unfinished = [f for f in self.folders.values()
                              if _epochs_done(f / "checkpoint.pt") < self.recipe.epochs]
                log = (unfinished or list(self.folders.values()))[0] / LOG
                tail = log.read_text().splitlines()[-15:] if log.exists() else ["(no log)"]
                print(f"the other process stopped with exit code {code}; the end of {log}:\n  " + "\n  ".join(tail)
                      + "\ntrain_recipe trains what is left of its runs here.")
        self.holder = None
        for folder in self.folders.values():
            if _lock_holder(folder) is None:
                (folder / LOCK).unlink(missing_ok=True)


def train_beside(r, train, *, name: str, seeds, device=None, root=None) -> Beside:
    """Start ``train_recipe(r, train, name=name, seed=s)`` for each of ``seeds`` (in order) in one other
    process on half of this process's threads, when that can help (a CPU with two or more threads,
    POSIX, no rehearsal, some seed unfinished); otherwise start nothing. Returns a ``Beside``: use it
    as ``with`` around this process's own training (which then gets the other half) and call
    ``wait()`` before the runs are needed."""
    from . import rehearsal
    from .recipes import recipe_run_dir
    from .runtime import profile
    from .workspace import runs_root
    dev = torch.device(device) if device is not None else torch.device("cpu")
    root = Path(root if root is not None else runs_root()).resolve()
    folders = {s: recipe_run_dir(r, train, name=name, seed=s, root=root) for s in seeds}
    todo = {s: f for s, f in folders.items() if _epochs_done(f / "checkpoint.pt") < r.epochs}
    threads = torch.get_num_threads()
    if not todo or dev.type != "cpu" or threads < 2 or os.name != "posix" or rehearsal.active():
        return Beside(r, todo)
    holders = {_lock_holder(f) for f in todo.values()} - {None}
    other = threads // 2
    if holders:                                  # an earlier kernel's process is still at it
        return Beside(r, todo, holder=holders.pop(), threads=(threads - other, other))
    for folder in todo.values():
        folder.mkdir(parents=True, exist_ok=True)
    # daemon: a kernel that shuts down (a restart) stops the process with it; the runs keep their
    # last checkpoint. A kernel that is killed leaves it running, and the lock says so.
    process = torch.multiprocessing.get_context("spawn").Process(
        target=_worker, args=(r, train, name, list(todo), root, other, profile()), daemon=True)
    process.start()
    for folder in todo.values():
        atomic_write_text(f"{process.pid}\n", folder / LOCK)
    return Beside(r, todo, process=process, threads=(threads - other, other))
