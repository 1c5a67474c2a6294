"""Train/validation/test splits over indexed events (models.data builds the inputs).

All three splits work on the flat event arrays of ``models.data.Events`` (sorted by user, then
time) and return ``Examples``: for each example the user, the global position of its target
event and where its history starts. A model sees ``events[max(start, pos - L):pos]`` and
predicts ``events[pos]``; nothing at or after ``pos`` is ever in the input.

* ``leave-last``: per user, last event = test, second-to-last = validation, the rest = train.
* ``temporal``: global time cuts at the 80% and 90% quantiles of event times; every event
  after the first cut is a target, its input is the user's whole history before it.
* ``trajectory``: the GETNext/STHGCN next-POI protocol (see /work/shared/PEERS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("leave-last", "temporal", "trajectory")
TRAJECTORY_HOURS = 24.0


@dataclass(frozen=True)
class Examples:
    """Example arrays (all int64, same length): user index, target position, history start."""

    user: np.ndarray
    pos: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def subset(self, keep: np.ndarray) -> Examples:
        return Examples(self.user[keep], self.pos[keep], self.start[keep])


@dataclass(frozen=True)
class SplitReport:
    """What a split did; ``dropped`` maps a reason to how many targets it removed."""

    split: str
    train_events: int
    train_examples: int
    valid: int
    test: int
    cuts: tuple[float, ...] = ()          # unix seconds of the time cuts (temporal/trajectory)
    dropped: dict[str, int] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)  # kept but worth knowing

    def __str__(self) -> str:
        parts = [f"split {self.split}: {self.train_events} training events "
                 f"({self.train_examples} training windows), {self.valid} validation and "
                 f"{self.test} test targets"]
        parts += [f"dropped {n} targets: {why}" for why, n in self.dropped.items() if n]
        parts += [f"{why}: {n}" for why, n in self.counted.items() if n]
        return "; ".join(parts)


@dataclass(frozen=True)
class SplitResult:
    train: Examples
    valid: Examples
    test: Examples
    train_len: np.ndarray      # (n_users + 1,) training events per user index
    train_mask: np.ndarray | None  # (n_events,) True for training events; None when not built
    report: SplitReport


def training_windows(user_start: np.ndarray, train_len: np.ndarray, max_len: int) -> Examples:
    """Non-overlapping windows over each user's training prefix.

    Targets are positions ``m-1, m-1-L, m-1-2L, ...`` (>= 1) of a prefix of length ``m``, so
    with teacher forcing (``target_seq``) every training transition is a target exactly once.
    """
    users = np.nonzero(train_len >= 2)[0]
    m = train_len[users]
    k = -(-(m - 1) // max_len)                              # ceil((m - 1) / L) windows each
    rep_user = np.repeat(users, k)
    first = np.repeat(np.cumsum(k) - k, k)
    j = np.arange(int(k.sum())) - first                     # window number within the user
    t = np.repeat(m, k) - 1 - j * max_len
    start = user_start[rep_user]
    return Examples(rep_user.astype(np.int64), (start + t).astype(np.int64),
                    start.astype(np.int64))


def _user_of_events(user_start: np.ndarray) -> np.ndarray:
    counts = np.diff(user_start)
    return np.repeat(np.arange(len(counts)), counts)


def _train_len_from_mask(user_start: np.ndarray, mask: np.ndarray) -> np.ndarray:
    user = _user_of_events(user_start)
    return np.bincount(user[mask], minlength=len(user_start) - 1).astype(np.int64)


def prefix_mask(user_start: np.ndarray, train_len: np.ndarray, first: int = 0,
                last: int | None = None) -> np.ndarray:
    """True for each of the first ``train_len[u]`` events of every user ``u`` in
    ``first..last - 1`` (default: all), over their events ``user_start[first]`` to
    ``user_start[last]``: the leave-last training part."""
    last = len(user_start) - 1 if last is None else last
    counts = np.diff(user_start[first:last + 1])
    pos = np.arange(user_start[first], user_start[last]) - np.repeat(user_start[first:last],
                                                                     counts)
    return pos < np.repeat(train_len[first:last], counts)


def leave_last(user_start: np.ndarray, max_len: int, with_mask: bool = True) -> SplitResult:
    """``with_mask=False`` leaves ``train_mask`` None: the split then needs memory for the
    users only, not the events (a user's first ``train_len`` events are its training part)."""
    n_users = len(user_start) - 1
    counts = np.diff(user_start)                     # index 0 is an empty dummy user
    users = np.arange(n_users)
    has_test = counts >= 2
    has_valid = counts >= 3
    test = Examples(users[has_test], user_start[1:][has_test] - 1, user_start[:-1][has_test])
    valid = Examples(users[has_valid], user_start[1:][has_valid] - 2,
                     user_start[:-1][has_valid])
    train_len = np.where(has_valid, counts - 2, np.where(has_test, counts - 1, counts))
    train_mask = prefix_mask(user_start, train_len) if with_mask else None
    train = training_windows(user_start, train_len, max_len)
    short = int(((counts >= 1) & ~has_valid).sum())
    report = SplitReport("leave-last", int(train_len.sum()), len(train), len(valid), len(test),
                         dropped={"users with fewer than 3 events have no validation target":
                                  short})
    return SplitResult(train, valid, test, train_len.astype(np.int64), train_mask, report)


def _time_cuts(ts: np.ndarray, fractions: tuple[float, float]) -> tuple[float, float]:
    s = np.sort(ts)
    return float(s[int(fractions[0] * len(s))]), float(s[int(fractions[1] * len(s))])


def _targets_after(user_start: np.ndarray, candidates: np.ndarray) -> Examples:
    user = _user_of_events(user_start)[candidates]
    return Examples(user.astype(np.int64), candidates.astype(np.int64),
                    user_start[user].astype(np.int64))


def temporal(user_start: np.ndarray, ts: np.ndarray, item: np.ndarray, max_len: int,
             fractions: tuple[float, float] = (0.8, 0.9)) -> SplitResult:
    t1, t2 = _time_cuts(ts, fractions)
    train_mask = ts < t1
    train_len = _train_len_from_mask(user_start, train_mask)
    seen_items = np.zeros(int(item.max()) + 1, dtype=bool)
    seen_items[item[train_mask]] = True
    dropped: dict[str, int] = {}
    counted: dict[str, int] = {}
    parts = []
    for name, sel in (("valid", (ts >= t1) & (ts < t2)), ("test", ts >= t2)):
        ex = _targets_after(user_start, np.nonzero(sel)[0])
        no_hist = ex.pos == ex.start
        dropped[f"{name}: first event of a user (no history to predict from)"] = int(
            no_hist.sum())
        ex = ex.subset(~no_hist)
        counted[f"{name}: targets kept whose user is unseen in training (post-cut history)"
                ] = int((train_len[ex.user] == 0).sum())
        counted[f"{name}: targets kept whose item is unseen in training (hard to rank)"
                ] = int((~seen_items[item[ex.pos]]).sum())
        parts.append(ex)
    train = training_windows(user_start, train_len, max_len)
    report = SplitReport("temporal", int(train_mask.sum()), len(train), len(parts[0]),
                         len(parts[1]), cuts=(t1, t2), dropped=dropped, counted=counted)
    return SplitResult(train, parts[0], parts[1], train_len, train_mask, report)


def trajectory_ids(user_start: np.ndarray, ts: np.ndarray,
                   hours: float = TRAJECTORY_HOURS) -> np.ndarray:
    """Trajectory number per event: a trajectory runs ``hours`` from its first check-in.

    The window is anchored at each trajectory's first event, so the loop is inherently
    sequential; it is one pass over plain Python floats (~0.1 s for 150k events).
    """
    span = hours * 3600.0
    out = np.empty(len(ts), dtype=np.int64)
    tl = ts.tolist()
    traj = -1
    for u in range(len(user_start) - 1):
        anchor = None
        for i in range(int(user_start[u]), int(user_start[u + 1])):
            if anchor is None or tl[i] - anchor >= span:
                traj += 1
                anchor = tl[i]
            out[i] = traj
    return out


def trajectory(user_start: np.ndarray, ts: np.ndarray, item: np.ndarray, max_len: int,
               fractions: tuple[float, float] = (0.8, 0.9), min_traj_len: int = 2
               ) -> SplitResult:
    """Next-POI protocol: score the last check-in of each 24-hour trajectory after the cut.

    A trajectory belongs to validation/test by the time of its last check-in; its input is
    the user's whole history before that check-in. Trajectories shorter than
    ``min_traj_len`` and targets whose user or POI never occurs in training are removed.
    """
    t1, t2 = _time_cuts(ts, fractions)
    train_mask = ts < t1
    train_len = _train_len_from_mask(user_start, train_mask)
    seen_items = np.zeros(int(item.max()) + 1, dtype=bool)
    seen_items[item[train_mask]] = True
    traj = trajectory_ids(user_start, ts)
    last = np.nonzero(np.r_[traj[1:] != traj[:-1], True])[0]        # last event of each
    length = np.bincount(traj)[traj[last]]
    dropped: dict[str, int] = {}
    parts = []
    for name, sel in (("valid", (ts[last] >= t1) & (ts[last] < t2)), ("test", ts[last] >= t2)):
        cand = last[sel]
        short = length[sel] < min_traj_len
        dropped[f"{name}: trajectories with fewer than {min_traj_len} check-ins"] = int(
            short.sum())
        ex = _targets_after(user_start, cand[~short])
        cold_user = train_len[ex.user] == 0
        dropped[f"{name}: user unseen in training"] = int(cold_user.sum())
        ex = ex.subset(~cold_user)
        cold_item = ~seen_items[item[ex.pos]]
        dropped[f"{name}: POI unseen in training"] = int(cold_item.sum())
        parts.append(ex.subset(~cold_item))
    train = training_windows(user_start, train_len, max_len)
    report = SplitReport("trajectory", int(train_mask.sum()), len(train), len(parts[0]),
                         len(parts[1]), cuts=(t1, t2), dropped=dropped,
                         counted={"24-hour trajectories in all": int(traj.max() + 1)})
    return SplitResult(train, parts[0], parts[1], train_len, train_mask, report)


def split_events(split: str, user_start: np.ndarray, ts: np.ndarray, item: np.ndarray,
                 max_len: int, with_mask: bool = True) -> SplitResult:
    """The ``split`` (one of ``SPLITS``) of indexed events; ``with_mask=False`` spares the
    leave-last split its per-event mask (the time splits need theirs)."""
    if split == "leave-last":
        return leave_last(user_start, max_len, with_mask)
    if split == "temporal":
        return temporal(user_start, ts, item, max_len)
    if split == "trajectory":
        return trajectory(user_start, ts, item, max_len)
    raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
