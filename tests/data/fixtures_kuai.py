"""Generate small KuaiRand-Pure and KuaiRec files in exactly the official formats (into a tmp dir).

The real logs are too big for the project's data copy, so the loaders are tested on these. Nothing here is
committed data: files are written at test time. KuaiRand fixtures use the *real* feature files (copied whole,
or their first rows, from ``$RECGYM_DATA_DIR/kuairand_pure``); the logs follow a planted click model so the
ground-truth completion can be checked against known probabilities.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

KUAIRAND_LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
    "play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab"
)
KUAIREC_MATRIX_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"
_DAY_MS = 86_400_000
_BEIJING = 8 * 3_600_000


@dataclass
class KuaiRandFixture:
    root: Path  # data root: pass as data_dir
    n_users: int
    n_items: int
    train_rows: int
    test_rows: int
    user_bias: np.ndarray = field(repr=False)  # planted logit = user_bias[u] + item_bias[i] + x[u] . y[i]
    item_bias: np.ndarray = field(repr=False)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    train_pairs: np.ndarray = field(repr=False)  # (n, 2) user, video
    test_pairs: np.ndarray = field(repr=False)

    def click_prob(self, users: np.ndarray | None = None, items: np.ndarray | None = None) -> np.ndarray:
        """Planted P(click): for (users, items) pairs, or the dense matrix when both are None."""
        if users is None or items is None:
            logit = self.user_bias[:, None] + self.item_bias[None, :] + self.x @ self.y.T
        else:
            logit = self.user_bias[users] + self.item_bias[items] + np.einsum("nk,nk->n", self.x[users], self.y[items])
        return 1.0 / (1.0 + np.exp(-logit))


def _copy_head(src: Path, dst: Path, n_rows: int | None) -> int:
    """Copy the header and the first ``n_rows`` records (all if None) of a CSV; returns the record count."""
    if n_rows is None:
        shutil.copyfile(src, dst)
        with open(src, encoding="utf-8") as f:
            return sum(1 for _ in f) - 1
    with open(src, encoding="utf-8", newline="") as f, open(dst, "w", encoding="utf-8", newline="") as g:
        g.write(f.readline())
        for k, line in enumerate(f):
            if k >= n_rows:
                break
            g.write(line)
    return n_rows


def _day_ms(yyyymmdd: int) -> int:
    import datetime as dt

    d = dt.datetime.strptime(str(yyyymmdd), "%Y%m%d").replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp() * 1000) - _BEIJING


def _log_frame(
    rng: np.random.Generator, pairs: np.ndarray, clicks: np.ndarray, dates: list[int], is_rand: int
) -> pd.DataFrame:
    """All 19 official columns, rows in time order (vectorised: real-size logs take seconds)."""
    n = len(pairs)
    day = rng.integers(0, len(dates), size=n)
    hour = rng.integers(0, 24, size=n)
    within = rng.integers(0, 3_600_000, size=n)
    dur = rng.integers(5_000, 300_000, size=n)
    c = clicks.astype(np.int64)
    date = np.asarray(dates, dtype=np.int64)[day]
    day_ms = np.array([_day_ms(d) for d in dates], dtype=np.int64)[day]
    play = np.where(c == 1, (rng.random(n) * (dur - 1_000)).astype(np.int64) + 1_000, rng.integers(0, 3_000, size=n))

    def flag(p: float) -> np.ndarray:
        return (c & (rng.random(n) < p)).astype(np.int64)

    df = pd.DataFrame(
        {
            "user_id": pairs[:, 0], "video_id": pairs[:, 1], "date": date, "hourmin": hour * 100,
            "time_ms": day_ms + hour * 3_600_000 + within, "is_click": c, "is_like": flag(0.1),
            "is_follow": flag(0.01), "is_comment": flag(0.02), "is_forward": flag(0.01),
            "is_hate": (rng.random(n) < 0.005).astype(np.int64), "long_view": (play > 0.8 * dur).astype(np.int64),
            "play_time_ms": play, "duration_ms": dur,
            "profile_stay_time": np.where(flag(0.05) == 1, rng.integers(0, 5_000, size=n), 0),
            "comment_stay_time": np.where(flag(0.03) == 1, rng.integers(0, 9_000, size=n), 0),
            "is_profile_enter": flag(0.05), "is_rand": np.full(n, is_rand), "tab": rng.integers(0, 15, size=n),
        }
    )  # fmt: skip
    return df.sort_values("time_ms", kind="stable").reset_index(drop=True)


def write_kuairand_fixture(
    root: Path,
    real_dir: Path,
    *,
    n_users: int | None = 300,
    n_items: int | None = 200,
    n_train: int = 6_000,
    n_test: int = 20_000,
    seed: int = 0,
) -> KuaiRandFixture:
    """Write ``root/kuairand_pure/`` with the official file names.

    ``real_dir``: the real ``kuairand_pure`` folder; its feature files are copied whole (``n_users`` /
    ``n_items`` None) or cut to their first rows. Clicks follow ``P(click) = sigmoid(a_u + b_i + x_u . y_i)``
    (rank 3); the standard log exposes popular videos more often, the random log exposes uniformly.
    """
    rng = np.random.default_rng(seed)
    out = root / "kuairand_pure"
    out.mkdir(parents=True, exist_ok=True)
    nu = _copy_head(real_dir / "user_features_pure.csv", out / "user_features_pure.csv", n_users)
    ni = _copy_head(real_dir / "video_features_basic_pure.csv", out / "video_features_basic_pure.csv", n_items)
    x = rng.normal(0, 1.0, size=(nu, 3))
    y = rng.normal(0, 1.0, size=(ni, 3))
    ub = -1.0 + rng.normal(0, 0.5, size=nu)
    ib = rng.normal(0, 0.7, size=ni)
    pop = np.exp(rng.normal(0, 1.0, size=ni))
    tr = np.c_[rng.integers(0, nu, n_train), rng.choice(ni, size=n_train, p=pop / pop.sum())]
    te = np.c_[rng.integers(0, nu, n_test), rng.integers(0, ni, n_test)]
    fx = KuaiRandFixture(out.parent, nu, ni, n_train, n_test, ub, ib, x, y, tr, te)
    tr_click = rng.random(n_train) < fx.click_prob(tr[:, 0], tr[:, 1])
    te_click = rng.random(n_test) < fx.click_prob(te[:, 0], te[:, 1])
    std_dates = [20220408 + d for d in range(14) if 20220408 + d <= 20220421]
    rnd_dates = [20220422 + d for d in range(9)] + [20220501 + d for d in range(8)]
    for fname, pairs, clicks, dates, is_rand in (
        ("log_standard_4_08_to_4_21_pure.csv", tr, tr_click, std_dates, 0),
        ("log_random_4_22_to_5_08_pure.csv", te, te_click, rnd_dates, 1),
    ):
        df = _log_frame(rng, pairs, clicks, dates, is_rand)
        assert ",".join(df.columns) == KUAIRAND_LOG_HEADER
        df.to_csv(out / fname, index=False, lineterminator="\n")
    return fx


@dataclass
class KuaiRecFixture:
    root: Path
    small_users: np.ndarray  # original ids, sorted
    small_videos: np.ndarray
    big_only_users: np.ndarray
    watch_ratio: np.ndarray  # (n_small_users, n_small_videos) raw values written (NaN = cell left out)
    big_rows: int  # rows written to big_matrix.csv
    big_rows_on_small_videos: int
    tags: dict[int, list[int]]


def write_kuairec_fixture(
    root: Path,
    *,
    n_small_users: int = 12,
    n_small_videos: int = 15,
    n_big_only_users: int = 8,
    n_big_only_videos: int = 6,
    n_big: int = 400,
    n_missing: int = 4,
    seed: int = 0,
) -> KuaiRecFixture:
    """Write ``root/kuairec/{small_matrix,big_matrix,item_categories}.csv`` in the official format.

    Original ids are non-contiguous (drawn from KuaiRec's real ranges) so the loader's remapping is
    exercised; ``n_missing`` small-matrix cells are left out, a few rows have empty time fields as in the
    real files, and some watch ratios exceed 5.
    """
    rng = np.random.default_rng(seed)
    out = root / "kuairec"
    out.mkdir(parents=True, exist_ok=True)
    users = np.sort(rng.choice(7176, size=n_small_users + n_big_only_users, replace=False))
    small_users = np.sort(rng.choice(users, size=n_small_users, replace=False))
    big_only = np.setdiff1d(users, small_users)
    videos = np.sort(rng.choice(10728, size=n_small_videos + n_big_only_videos, replace=False))
    small_videos = np.sort(rng.choice(videos, size=n_small_videos, replace=False))
    wr = np.round(rng.gamma(1.2, 0.8, size=(n_small_users, n_small_videos)), 6)
    wr[rng.random(wr.shape) < 0.05] = 7.5  # some > 5: must be clipped
    cells = [(a, b) for a in range(n_small_users) for b in range(n_small_videos)]
    drop = {cells[k] for k in rng.choice(len(cells), size=n_missing, replace=False)}
    for a, b in drop:
        wr[a, b] = np.nan

    def row(u: int, v: int, w: float, empty_time: bool) -> list[object]:
        vdur = int(rng.integers(3_000, 60_000))
        play = int(round(w * vdur))
        if empty_time:
            return [u, v, play, vdur, "", "", "", f"{w:.6f}".rstrip("0").rstrip(".")]
        ts = 1593878400.0 + float(rng.integers(0, 60 * 86400)) + float(rng.integers(0, 1000)) / 1000
        import datetime as dt

        t = dt.datetime.fromtimestamp(ts, tz=dt.timezone(dt.timedelta(hours=8)))
        return [u, v, play, vdur, t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], f"{t.strftime('%Y%m%d')}.0", f"{ts:.3f}",
                f"{w:.6f}".rstrip("0").rstrip(".")]  # fmt: skip

    small_rows = [
        row(int(small_users[a]), int(small_videos[b]), float(wr[a, b]), rng.random() < 0.03)
        for a in range(n_small_users)
        for b in range(n_small_videos)
        if (a, b) not in drop
    ]
    big_u = rng.choice(users, size=n_big)
    big_v = rng.choice(videos, size=n_big)
    big_w = np.round(rng.gamma(1.2, 0.8, size=n_big), 6)
    big_rows = [row(int(u), int(v), float(w), rng.random() < 0.02) for u, v, w in zip(big_u, big_v, big_w, strict=True)]
    for fname, rows in (("small_matrix.csv", small_rows), ("big_matrix.csv", big_rows)):
        with open(out / fname, "w", encoding="utf-8", newline="") as f:
            f.write(KUAIREC_MATRIX_HEADER + "\n")
            csv.writer(f, lineterminator="\n").writerows(rows)
    tags: dict[int, list[int]] = {}
    with open(out / "item_categories.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["video_id", "feat"])
        for v in range(int(videos.max()) + 1):  # the real file lists every video id in order
            k = int(rng.integers(1, 4))
            tv = sorted({int(t) for t in rng.integers(0, 31, size=k)}, reverse=bool(rng.random() < 0.5))
            tags[v] = tv
            w.writerow([v, "[" + ", ".join(str(t) for t in tv) + "]"])
    return KuaiRecFixture(
        root, small_users, small_videos, big_only, wr, n_big, int(np.isin(big_v, small_videos).sum()), tags
    )


def write_kuairand_gt_csv(
    root: Path, values: np.ndarray, *, drop: int = 0, repeat: int = 0, shuffle: bool = True, seed: int = 0
) -> tuple[Path, np.ndarray]:
    """Write DORL's ``kuairand_pure/MF_results_GT/kuairand_is_click.csv`` (header ``user_id,item_id,value``,
    one row per pair, values as pandas writes float64) for the dense ``values``.

    ``drop`` random pairs are left out and ``repeat`` random pairs are written a second time (with the same
    value); rows are shuffled unless ``shuffle`` is False. Returns the path and the matrix DORL's reading
    gives (missing pairs 0, repeated pairs summed).
    """
    rng = np.random.default_rng(seed)
    nu, ni = values.shape
    users, items = np.divmod(np.arange(nu * ni), ni)
    keep = np.ones(nu * ni, dtype=bool)
    keep[rng.choice(nu * ni, size=drop, replace=False)] = False
    extra = rng.choice(np.flatnonzero(keep), size=repeat, replace=False)
    rows = np.r_[np.flatnonzero(keep), extra]
    if shuffle:
        rows = rng.permutation(rows)
    expected = np.zeros(nu * ni)
    np.add.at(expected, rows, values.reshape(-1)[rows])
    out = root / "kuairand_pure" / "MF_results_GT"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "kuairand_is_click.csv"
    pd.DataFrame({"user_id": users[rows], "item_id": items[rows], "value": values.reshape(-1)[rows]}).to_csv(
        path, index=False, lineterminator="\n"
    )
    return path, expected.reshape(nu, ni)
