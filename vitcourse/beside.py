"""A recipe's other seeds trained in a second process while the notebook trains its own, and other
trainings side by side in threads (CPU only).

On a CPU, a second thread speeds one small model's training up by only about 1.3x (the matrices
are too small to share well), so two one-thread runs side by side finish two seeds sooner than one
run after the other on two threads: 1.2-1.5x on the course's 2-core machine
(``benchmarks/RESULTS.md``, item 6). A chapter that needs several seeds of one recipe (chapter 03's
C3c) starts them here, trains its own seed on the threads that are left, and waits for them where it
needs them::

    with train_beside(R, train_data, name="03_vit", seeds=(1,), device=DEVICE, own=ckpt) as others:
        history = fit(model, ..., checkpoint=ckpt)   # seed 0, on the threads the other process leaves
    ...
    others.wait()                                # then train_recipe(R, ..., seed=1) loads the run

The other process runs ``recipes.train_recipe`` for each seed (without a test curve), so its runs
are checkpointed in the folders ``train_recipe`` uses: what stops it loses at most the epoch in
progress, and the ``train_recipe`` call that needs an unfinished run trains the rest. It ignores
Ctrl+C (interrupting the notebook stops only the notebook's own training; run the cell again and it
finds the process at work, and waits for it even when the notebook's own run is finished);
restarting the kernel stops it. A lock file (``beside.pid`` in each run's
folder: the process's id, machine and start time) keeps a second process off a run one is already
training, and ``beside.log`` there holds what the process printed. Two kernels that start at the same
moment take turns (``.beside.lock`` in the runs folder, held from the check to the written locks), so
the second finds the first's process instead of starting its own.

While both train, the notebook runs on half its threads. If the other process ends first, pass
``on_epoch_end=others.on_epoch_end`` to ``fit``: from the next epoch the notebook has all its threads
back (otherwise it gets them back when the ``with`` block ends).

Results may differ from a run on another number of threads (the sums inside a matrix product are
split differently, and training carries such last-digit differences on), as they do between machines.

Nothing starts (``started`` is False, ``wait`` returns at once and the seeds are trained where
``train_recipe`` is called) on a GPU, in a rehearsal, when torch uses one thread, off POSIX, when the
notebook's own run (``own``) is already finished, or when every seed's run is.

``side_by_side(job_a, job_b)`` is the same idea for trainings that are not a recipe's seeds (chapter
03's low-resolution pre-trainings and fine-tunings): the notebook's own functions, run in two Python
threads of the notebook's process on one torch thread each, their results returned in order.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext, redirect_stderr, redirect_stdout
from pathlib import Path

import torch

from ._io import atomic_write_json

LOCK, LOG = "beside.pid", "beside.log"
POLL_S = 5.0     # how often wait() looks at the other process's checkpoints


def _started_at(pid: int) -> str | None:
    """When the process started, as the kernel counts it (Linux: /proc/PID/stat, field 22), with the
    boot's id: together with the machine's name they tell a process from a later one with the same id."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return None              # no /proc (macOS): the id and the machine only
    return f"{boot}:{start}"


def _identity(pid: int) -> dict:
    return {"pid": pid, "host": socket.gethostname(), "started": _started_at(pid)}


def _alive(pid: int) -> bool:
    """Whether a process with this id is running (POSIX: signal 0 only asks; on Linux an ended process
    that its parent has not yet reaped, a zombie, counts as ended)."""
    if pid <= 0:                               # os.kill(0 or -1, ...) would ask about a whole group
        return False
    multiprocessing.active_children()          # reaps this process's own ended workers
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
    return state not in ("Z", "X")


def _lock_holder(folder: Path) -> int | None:
    """The id of the live process that holds ``folder``'s lock, else None: no lock, or a stale one (its
    process has ended, or the lock was written on another machine or before a restart, where the id
    now names another process). Off POSIX, where nothing is started, always None."""
    if os.name != "posix":
        return None
    try:
        lock = json.loads((folder / LOCK).read_text())
        pid = int(lock["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and _is(pid, lock) else None


def _is(pid: int, lock: dict) -> bool:
    """Whether ``pid`` is still the live process ``lock`` (a ``_identity``) was written for."""
    return lock.get("host") == socket.gethostname() and _alive(pid) and lock.get("started") == _started_at(pid)


@contextmanager
def _turn(root: Path):
    """Hold ``root/.beside.lock`` (an exclusive ``flock``, freed by the system when the holder dies): one
    kernel at a time goes from reading the run locks to writing its own. Where the file system has no
    locks (some network drives), the turn is not taken and a start at the same instant can still race."""
    handle = None
    try:
        import fcntl
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / ".beside.lock", "a")
    except (ImportError, OSError):
        pass
    if handle is None:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield                                  # closing the file frees the lock


def _epochs_done(checkpoint: Path) -> int:
    """Finished epochs in a train_recipe checkpoint (0 when there is none yet)."""
    from .checkpoint import read_checkpoint
    try:
        return int(read_checkpoint(checkpoint)["epoch"])
    except (FileNotFoundError, RuntimeError):    # none yet, or being replaced at this instant
        return 0


def _plain(data) -> tuple:
    """An ImageData as numpy arrays and plain values: sent through the pipe, not through shared
    memory (/dev/shm), which a Docker container may have too little of for a whole training set."""
    return (data.images.numpy(), data.labels.numpy(), list(data.classes), tuple(data.mean), tuple(data.std),
            data.name)


def _worker(r, plain_train, name, seeds, root, threads, profile_name):
    """The other process: train_recipe for each seed on ``threads`` threads, printing to each run's log."""
    from .data import ImageData
    from .recipes import recipe_run_dir, train_recipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the notebook's Ctrl+C is for the notebook
    os.environ["VITCOURSE_PROFILE"] = profile_name    # the run folders are the notebook's
    torch.set_num_threads(threads)
    images, labels, classes, mean, std, data_name = plain_train
    train = ImageData(torch.from_numpy(images), torch.from_numpy(labels), classes, mean, std, data_name)
    for seed in seeds:
        folder = recipe_run_dir(r, train, name=name, seed=seed, root=root)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG, "a", buffering=1) as log, redirect_stdout(log), redirect_stderr(log):
            for fd in (1, 2):         # C-level output too (OpenMP's warnings), not into the notebook's cell
                os.dup2(log.fileno(), fd)
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

    def __init__(self, r, folders: dict[int, Path], process=None, holders: dict[int, dict] | None = None,
                 threads: tuple[int, int] = (0, 0), why_not: str = ""):
        self.recipe, self.folders, self.process, self.holders = r, folders, process, dict(holders or {})
        self.own_threads, self.other_threads = threads
        self.why_not = why_not
        self._saved_threads = None
        self.epoch_threads: list[tuple[int, int]] = []   # (epoch, threads it trained on), by on_epoch_end
        self.shared = False     # whether a ``with`` block ran beside the other process (still True after wait)

    @property
    def started(self) -> bool:
        """Whether a process (this one's, or an earlier kernel's) is training the seeds."""
        return self.process is not None or bool(self.holders)

    def __repr__(self) -> str:
        seeds = f"seed{'s' if len(self.folders) != 1 else ''} {', '.join(map(str, self.folders))}"
        if self.process is not None:
            return (f"Beside({seeds} training in process {self.process.pid} on {self.other_threads} thread(s); "
                    f"the notebook trains on {self.own_threads}; its log: beside.log in each run's folder)")
        if self.holders:
            return (f"Beside({seeds} already training in process {', '.join(map(str, sorted(self.holders)))}, "
                    f"started earlier; the notebook trains on {self.own_threads} thread(s))")
        return f"Beside(nothing started: {self.why_not})" if self.why_not else "Beside(the other process has ended)"

    def __enter__(self) -> "Beside":
        if self.started:                             # share the cores while both train
            self.shared = True
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.own_threads)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def on_epoch_end(self, epoch=None, history=None) -> None:
        """For ``fit(..., on_epoch_end=others.on_epoch_end)``: once the other process has ended, the
        notebook's training gets all its threads back from its next epoch."""
        self.epoch_threads.append((epoch if epoch is not None else len(self.epoch_threads) + 1,
                                   torch.get_num_threads()))
        if self._saved_threads is not None and not self._running():
            torch.set_num_threads(self._saved_threads)
            self.own_threads, self.other_threads = self._saved_threads, 0

    def threads_used(self) -> str:
        """The thread counts the notebook's epochs trained on, as on_epoch_end saw them: e.g.
        "1 thread in epochs 1-12, 2 threads in epochs 13-16"."""
        spans: list[list[int]] = []                        # [first epoch, last epoch, threads]
        for epoch, n in self.epoch_threads:
            if spans and spans[-1][2] == n and spans[-1][1] == epoch - 1:
                spans[-1][1] = epoch
            else:
                spans.append([epoch, epoch, n])
        return ", ".join(f"{n} thread{'s' * (n != 1)} in epoch{'s' * (a != b)} {a}{f'-{b}' * (a != b)}"
                         for a, b, n in spans)

    def _running(self) -> bool:
        if self.process is not None:    # and not reaped by someone else, which is_alive would not see
            return self.process.is_alive() and _alive(self.process.pid)
        return any(_is(pid, lock) for pid, lock in self.holders.items())   # a reused id is not waited for

    def wait(self, progress: bool = True) -> None:
        """Block until the other process has ended, with one progress bar of its epochs. When it stopped
        before finishing (its log's last lines are printed), the ``train_recipe`` call that needs a run
        trains what is left of it."""
        if not self.started:
            return
        from tqdm.auto import tqdm
        total = len(self.folders) * self.recipe.epochs

        def done():
            return sum(min(_epochs_done(f / "checkpoint.pt"), self.recipe.epochs) for f in self.folders.values())

        bar = tqdm(total=total, desc=f"seed(s) {', '.join(map(str, self.folders))} in the other process",
                   unit="epoch", disable=not progress, initial=done())
        try:
            while self._running():
                if self.process is not None:
                    self.process.join(POLL_S)        # returns as soon as it ends
                else:
                    time.sleep(POLL_S)
                bar.update(done() - bar.n)
        finally:
            bar.close()
        code, ours = None, set(self.holders)
        if self.process is not None:
            self.process.join(POLL_S)
            code, ours, self.process = self.process.exitcode, {self.process.pid}, None
        self.holders = {}
        unfinished = [f for f in self.folders.values() if _epochs_done(f / "checkpoint.pt") < self.recipe.epochs]
        for folder in self.folders.values():     # its own locks only (another machine's stay)
            try:
                if int(json.loads((folder / LOCK).read_text())["pid"]) in ours:
                    (folder / LOCK).unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                pass
        if unfinished:
            how = ("ended" if not code else f"was killed by signal {-code}" if code < 0
                   else f"stopped with exit code {code}")
            log = unfinished[0] / LOG
            tail = log.read_text().splitlines()[-15:] if log.exists() else ["(no log)"]
            print(f"the other process {how} before it finished; the end of {log}:\n  " + "\n  ".join(tail)
                  + f"\ntrain_recipe trains what is left of {len(unfinished)} run(s) here.")


def train_beside(r, train, *, name: str, seeds, device=None, root=None, own=None) -> Beside:
    """Start ``train_recipe(r, train, name=name, seed=s)`` for each of ``seeds`` (in order) in one other
    process on half of this process's threads, when that can help (a CPU, two or more threads, POSIX,
    no rehearsal, the notebook's own run ``own`` (its checkpoint file, if given) not yet finished, some
    seed unfinished); otherwise start nothing and say why. Returns a ``Beside``: use it as ``with``
    around this process's own training (which then gets the other half) and call ``wait()`` before
    the runs are needed."""
    from .workspace import runs_root
    dev = torch.device(device) if device is not None else torch.device("cpu")
    root = Path(root if root is not None else runs_root()).resolve()
    could_start = dev.type == "cpu" and os.name == "posix"
    with _turn(root) if could_start else nullcontext():   # another kernel's start ends before this one looks
        return _start(r, train, name, seeds, root, dev, own)


def _start(r, train, name, seeds, root, dev, own) -> Beside:
    """train_beside's check and start, taken in turn (``_turn``)."""
    from . import rehearsal
    from .recipes import recipe_run_dir
    from .runtime import profile
    folders = {s: recipe_run_dir(r, train, name=name, seed=s, root=root) for s in seeds}
    todo = {s: f for s, f in folders.items() if _epochs_done(f / "checkpoint.pt") < r.epochs}
    threads = torch.get_num_threads()
    holders = {}
    for folder in todo.values():                 # an earlier kernel's process still at it is waited for,
        pid = _lock_holder(folder)               # whatever else holds
        if pid is not None:
            holders[pid] = json.loads((folder / LOCK).read_text())
    own_done = own is not None and _epochs_done(Path(own)) >= r.epochs
    if holders:
        other = 0 if own_done else threads // 2  # nothing of its own to train: the notebook keeps its threads
        return Beside(r, todo, holders=holders, threads=(threads - other, other))
    why_not = ("no seed to train" if not folders else "every seed's run is finished" if not todo
               else f"the device is {dev.type}, not a CPU" if dev.type != "cpu"
               else "torch uses one thread" if threads < 2 else "not POSIX" if os.name != "posix"
               else "a rehearsal" if rehearsal.active()
               else "the notebook's own run is finished" if own_done else "")
    if why_not:
        return Beside(r, todo, why_not=why_not + (": the seeds are trained where train_recipe is called"
                                                  if todo else ""))
    other = threads // 2
    for folder in todo.values():
        folder.mkdir(parents=True, exist_ok=True)
    # daemon: a kernel that shuts down (a restart) stops the process with it; the runs keep their
    # last checkpoint. The lock tells a later kernel whether it still runs.
    # Jupyter sends Ctrl+C to the kernel's whole process group: the child ignores it from its birth (an
    # ignored SIGINT is inherited), and the parent until the locks are written, so that no interrupt
    # leaves a process without its lock.
    process = torch.multiprocessing.get_context("spawn").Process(
        target=_worker, args=(r, _plain(train), name, list(todo), root, other, profile()), daemon=True)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    try:
        process.start()
        for folder in todo.values():
            atomic_write_json(_identity(process.pid), folder / LOCK)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    return Beside(r, todo, process=process, threads=(threads - other, other))


def threads_each(jobs: int, device=None) -> int:
    """The torch threads each of ``jobs`` jobs trains on in ``side_by_side``, or 0 where they run one
    after the other (see there)."""
    from . import rehearsal
    dev = torch.device(device) if device is not None else torch.device("cpu")
    threads = torch.get_num_threads()
    if jobs < 2 or dev.type != "cpu" or threads < jobs or rehearsal.active():
        return 0
    return threads // jobs


def side_by_side(*jobs, device=None) -> list:
    """Run the zero-argument functions ``jobs`` (trainings, say) at the same time, one Python thread
    each on an equal share of torch's threads, and return their results in order.

    The reason is this module's: on a CPU, two one-thread trainings of a small model side by side
    finish sooner than one after the other on two threads. PyTorch lets go of Python's global lock
    inside its kernels, so threads are enough here: no second process, and a job may be any function
    of the notebook. Where that cannot help (not a CPU, fewer torch threads than jobs, one job) and in
    a rehearsal (whose measurements of each run's first step are not for two at once), the jobs run
    one after the other in this thread, as plain calls would.

    The threads share the global random generator, which they would draw from in an order of their
    own: build each job's model before it starts (outside the job) and give each its own loader
    (``DeviceLoader(seed=...)`` draws from its own generators), so that the results do not depend on
    how the threads take turns. A job's exception is raised here once every job has stopped.
    A thread cannot be stopped from outside: after Ctrl+C the jobs run to their end (their
    checkpoints keep what they trained), and then the interrupt is raised; a second Ctrl+C leaves
    them running in the background, where running the cell again would train a second copy of each."""
    threads, each = torch.get_num_threads(), threads_each(len(jobs), device)
    if not each:
        return [job() for job in jobs]
    results, errors = [None] * len(jobs), [None] * len(jobs)

    def run(i):
        try:
            results[i] = jobs[i]()
        except BaseException as err:            # raised in the caller's thread, below
            errors[i] = err

    # A new thread takes torch's thread count the first time it runs an operation: set it first.
    torch.set_num_threads(each)
    workers = [threading.Thread(target=run, args=(i,), name=f"side_by_side-{i}", daemon=True)
               for i in range(len(jobs))]
    try:
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(0.5)            # a short join: Ctrl+C reaches this thread in between
        except KeyboardInterrupt:
            print(f"interrupted: the {sum(w.is_alive() for w in workers)} job(s) still running cannot be "
                  "stopped from outside; waiting for them to end (Ctrl+C again leaves them running)",
                  file=sys.stderr)
            for w in workers:
                w.join()
            raise
    finally:
        torch.set_num_threads(threads)
    for i, err in enumerate(errors):
        if err is not None:
            raise RuntimeError(f"side_by_side: job {i} ({getattr(jobs[i], '__name__', jobs[i])!r}) failed") from err
    return results
