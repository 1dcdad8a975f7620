"""The built-in datasets: one `DatasetInfo` each, registered when `recgym.data.registry` is imported.

Official checksums are the sha256 of the files of the official releases that `recgym data download` / the Webscope
archive put in place (taken from the project's data copy ``SHA256SUMS``; its extra files, such as DORL reference
artefacts, are left out). Download checksums are the publishers' (GroupLens ships ml-1m.zip.md5; Zenodo lists an
md5 per file); Coat's archive has no published checksum, so its content is checked instead, and the
pseudo-ground-truth matrix (not part of coat.zip; from the RL4Rec repository at a pinned commit) by its sha256.
"""

from __future__ import annotations

from recgym.data.registry import DatasetInfo, ExtraFile, MemberCheck, Source, register_dataset

ALL_FAMILIES = ("GroundTruthRec", "InteractiveRec", "DiffusionDenoise")

# DiffRec on small catalogues: a one-hidden-layer model trains in seconds on a CPU.
_SMALL_DIFFREC = {"hidden": (200,), "steps": 10, "batch_size": 100, "max_epochs": 40, "eval_every": 5, "patience": 15}

# ---------------------------------------------------------------------------------------------------- Coat

_COAT_GT = "coat/rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii"
_COAT_GT_SHA256 = "fee71820f155a3f43ab50858734a23102c8328cf9bd0e586ed5a7db2fb084223"

COAT = DatasetInfo(
    name="coat",
    env_tag="Coat",
    loader="recgym.data.coat:load_coat",
    folder="coat",
    files=(
        "coat/train.ascii",
        "coat/test.ascii",
        _COAT_GT,
        "coat/user_item_features/item_features.ascii",
        "coat/user_item_features/item_features_map.txt",
        "coat/user_item_features/user_features.ascii",
        "coat/user_item_features/user_features_map.txt",
    ),
    presence_files=(("coat/train.ascii", "coat/test.ascii", _COAT_GT),),
    checksums={
        "coat/README.txt": "d06ddde2bfb40fa325d8d185af9b4e8b23a90e994ba1ac01fcbf482cf1dc26fa",
        "coat/propensities.ascii": "a72e3142a413623c4a6b9d20c4f70fcc017e0db67cc3eb242116f69fb8fb9661",
        _COAT_GT: _COAT_GT_SHA256,
        "coat/test.ascii": "51fa28550f5bedebc6959d0e7b5e242b173c3c8d16317c7e49b89441304504ce",
        "coat/train.ascii": "f9088c6e95fa9a42e8be6a92fc77252b95b969e34ed1299c611420da68680873",
        "coat/user_item_features/item_features.ascii": "72b08cc0766d3e9899231aea90c815b5bb08e07dcfba569d5f182da649099f5a",
        "coat/user_item_features/item_features_map.txt": "2675dfaa38b89a9cbb1997f0cfcd46ed7e0e366dc515d12d95508d1f356e5d25",
        "coat/user_item_features/user_features.ascii": "593b59c63a3f983575d3a770b32158fdfa4e2e4f63aafffdee70d1600ff072f8",
        "coat/user_item_features/user_features_map.txt": "3b8c825ad4445d4a46a400629c5fb43c805ff5a7982b2e436b69e7262c8a013a",
    },
    ground_truth="shipped",
    quit_rule="distance",
    env_families=ALL_FAMILIES,
    download=Source(
        name="coat",
        url="https://www.cs.cornell.edu/~schnabts/mnar/coat.zip",
        homepage="https://www.cs.cornell.edu/~schnabts/mnar/",
        archive="coat.zip",
        strip="coat",
        checks=(
            MemberCheck("train.ascii", min_bytes=100_000, n_lines=290, n_fields=300),
            MemberCheck("test.ascii", min_bytes=100_000, n_lines=290, n_fields=300),
            MemberCheck("propensities.ascii", min_bytes=100_000, n_lines=290, n_fields=300),
            MemberCheck("user_item_features/user_features.ascii", n_lines=290, n_fields=14),
            MemberCheck("user_item_features/item_features.ascii", n_lines=300, n_fields=33),
            MemberCheck("rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii", n_lines=290, n_fields=300),
        ),
        extras=(
            ExtraFile(
                url="https://raw.githubusercontent.com/BetsyHJ/RL4Rec/f198f7dbcaba7b607f813b3a87d46613654edc6e/"
                "data/coat_pseudoGT_ratingM.ascii",
                dest="rl4rec_BetsyHJ/coat_pseudoGT_ratingM.ascii",
                checksum=("sha256", _COAT_GT_SHA256),
            ),
        ),
    ),
    origin="https://www.cs.cornell.edu/~schnabts/mnar/ (+ RL4Rec pseudo-GT matrix)",
    licence="research use; cite Schnabel et al. 2016",
    model_defaults={"diffrec": _SMALL_DIFFREC},
)

# ---------------------------------------------------------------------------------------------------- Yahoo

_YAHOO_FILES = ("ydata-ymusic-rating-study-v1_0-train.txt", "ydata-ymusic-rating-study-v1_0-test.txt")

YAHOO = DatasetInfo(
    name="yahoo",
    env_tag="Yahoo",
    aliases=("yahoo_r3",),
    loader="recgym.data.yahoo:load_yahoo",
    folder="yahoo_r3",
    files=tuple(f"yahoo_r3/{f}" for f in _YAHOO_FILES),
    checksums={
        "yahoo_r3/WebscopeReadMe.txt": "e19d55709a27eabb3e85d2bccf86405feead5e56502b5075e3aeab96e29033bd",
        "yahoo_r3/ydata-ymusic-rating-study-v1_0-readme.txt": "9a4bf9e9fc6b724b1a29d0403976c757d78b74d32caa290724b44ee4dcd19fb9",
        "yahoo_r3/ydata-ymusic-rating-study-v1_0-survey-answers.txt": "d683b965ae7aed511213440415a1719c102ba6efd92eec36465366c3ecca8b72",
        "yahoo_r3/ydata-ymusic-rating-study-v1_0-survey-questions.txt": "0da866e90981fee2835c05956f62f8af5fa1afa9fc7b408e21cd1efacbd14c25",
        "yahoo_r3/ydata-ymusic-rating-study-v1_0-test.txt": "f27a73bef8c7ccedb17576fe2d4cc52b80c2d5fa60f13529596f003ffd0d8533",
        "yahoo_r3/ydata-ymusic-rating-study-v1_0-train.txt": "85538b3c4a93eafc4f0ce2d39a6cd178e32a6b615ce775b9d635f7995706269d",
    },
    ground_truth="completed",
    quit_rule="distance",
    env_families=ALL_FAMILIES,
    access_hint=(
        "Yahoo! R3 cannot be downloaded automatically: its licence (Yahoo! Webscope) forbids redistribution. "
        "Apply for it at https://webscope.sandbox.yahoo.com/ (catalogue 'Ratings', dataset "
        "\"R3 - Yahoo! Music ratings for User Selected and Randomly Selected songs\"), unpack the archive you "
        f"receive and put its files in {{folder}}/ : {', '.join(_YAHOO_FILES)} (the readme files may go there "
        "too). Then `load_dataset('yahoo')` finds them (set RECGYM_DATA_DIR or pass data_dir= to use another root). "
        "With the licence and those files in place, `recgym data download yahoo --accept-licence` (or "
        "download('yahoo', accept_licence=True)) fetches RL4Rec's yahoo_pseudoGT_ratingM.ascii, the pseudo ground "
        "truth the published Yahoo numbers use; without it recgym falls back to its own, non-comparable ground "
        "truth."
    ),
    origin="https://webscope.sandbox.yahoo.com/ (R3)",
    licence="Yahoo! Webscope licence: apply; no redistribution, no automatic download",
    # lighter configs so a first fit stays feasible on 2 CPU cores; the diffusion world model keeps its class
    # defaults (100 epochs, 32 samples): 20 epochs and 8 samples ranked the unbiased test ratings clearly worse
    # (docs/RESULTS.md, "R3S")
    model_defaults={
        "deepfm": {"epochs": 1, "n_negatives": 2, "batch_size": 8192},
        "mf": {"epochs": 60},
        "diffrec": {"hidden": (600, 200, 600), "max_epochs": 100, "eval_every": 5, "patience": 20},
    },
)

# ---------------------------------------------------------------------------------------------------- KuaiRand

_KUAIRAND_LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
    "play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab"
)

KUAIRAND = DatasetInfo(
    name="kuairand",
    env_tag="KuaiRand",
    aliases=("kuairand_pure",),
    loader="recgym.data.kuairand:load_kuairand",
    folder="kuairand_pure",
    files=(
        "kuairand_pure/log_standard_4_08_to_4_21_pure.csv",
        "kuairand_pure/log_random_4_22_to_5_08_pure.csv",
        "kuairand_pure/user_features_pure.csv",
        "kuairand_pure/video_features_basic_pure.csv",
    ),
    presence_files=(
        (
            "kuairand_pure/log_standard_4_08_to_4_21_pure.csv",
            "kuairand_pure/log_random_4_22_to_5_08_pure.csv",
            "kuairand_pure/video_features_basic_pure.csv",
        ),
    ),
    checksums={
        "kuairand_pure/user_features_pure.csv": "dc729a656301b4c6d07f713fe41d05ec9bfaab670b90e531c70037caf033c011",
        "kuairand_pure/video_features_basic_pure.csv": "a6f7ee02684c5777422306cdc416e170302288aa89aca9dfea995edbd625bcc2",
    },
    search_subdirs=("", "data", "KuaiRand-Pure/data"),
    ground_truth="completed",
    quit_rule="category",
    download=Source(
        name="kuairand",
        url="https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz",
        homepage="https://kuairand.com/",
        archive="KuaiRand-Pure.tar.gz",
        strip="KuaiRand-Pure/data",
        checksum=("md5", "0820331067a3784d9691136f772b35a7"),
        size_bytes=47_432_272,
        checks=(
            MemberCheck("log_standard_4_08_to_4_21_pure.csv", min_bytes=10_000_000, header=_KUAIRAND_LOG_HEADER),
            MemberCheck("log_standard_4_22_to_5_08_pure.csv", min_bytes=1_000_000, header=_KUAIRAND_LOG_HEADER),
            MemberCheck("log_random_4_22_to_5_08_pure.csv", min_bytes=10_000_000, header=_KUAIRAND_LOG_HEADER),
            MemberCheck("user_features_pure.csv", min_bytes=1_000_000, n_lines=27_286),
            MemberCheck("video_features_basic_pure.csv", min_bytes=100_000, n_lines=7_584),
        ),
    ),
    origin="https://kuairand.com/ (KuaiRand-Pure)",
    licence="CC BY-SA 4.0",
    model_defaults={
        "deepfm": {"embed_dim": 4, "epochs": 1, "n_negatives": 2, "batch_size": 8192},
        "diffusion": {"epochs": 10, "batch_size": 256, "n_samples": 8},
    },
)

# ---------------------------------------------------------------------------------------------------- KuaiRec

_KUAIREC_MATRIX_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"

KUAIREC = DatasetInfo(
    name="kuairec",
    env_tag="KuaiRec",
    loader="recgym.data.kuairec:load_kuairec",
    folder="kuairec",
    files=("kuairec/small_matrix.csv", "kuairec/big_matrix.csv", "kuairec/item_categories.csv"),
    search_subdirs=("", "data", "KuaiRec 2.0/data", "KuaiRec/data"),
    ground_truth="observed",
    quit_rule="category",
    download=Source(
        name="kuairec",
        url="https://zenodo.org/records/18164998/files/KuaiRec.zip",
        homepage="https://kuairec.com/",
        archive="KuaiRec.zip",
        strip="KuaiRec 2.0/data",
        checksum=("md5", "261550d472c48eff4990fb13c0e5bcf7"),
        size_bytes=431_964_858,
        checks=(
            MemberCheck("small_matrix.csv", min_bytes=100_000_000, header=_KUAIREC_MATRIX_HEADER),
            MemberCheck("big_matrix.csv", min_bytes=500_000_000, header=_KUAIREC_MATRIX_HEADER),
            MemberCheck("item_categories.csv", min_bytes=10_000, header="video_id,feat"),
        ),
    ),
    origin="https://kuairec.com/ (KuaiRec 2.0)",
    licence="CC BY-SA 4.0",
)

# ---------------------------------------------------------------------------------------------------- ML-1M

_ML1M_RAW_SHA256 = {
    "ml-1m/raw/README": "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133",
    "ml-1m/raw/movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "ml-1m/raw/users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
}
_ML1M_LICENCE = "GroupLens terms: research use, no redistribution"


def _diffrec_split(variant: str) -> tuple[str, ...]:
    return tuple(f"ml-1m/diffrec/ml-1m_{variant}/{f}.npy" for f in ("train_list", "valid_list", "test_list", "item_emb"))


ML1M = DatasetInfo(
    name="ml1m",
    env_tag="ML1M",
    aliases=("movielens1m",),
    loader="recgym.data.ml1m:load_ml1m",
    loader_kwargs={"variant": "clean"},
    folder="ml-1m",
    files=_diffrec_split("clean"),
    # the DiffRec split, or the raw ratings it can be rebuilt from
    presence_files=(_diffrec_split("clean")[:3], ("ml-1m/raw/ratings.dat",)),
    checksums={
        "ml-1m/diffrec/ml-1m_clean/item_emb.npy": "51cdab37eb5de0fcbb057e7616e19498328398633a4805471cd5078b4e3e2c77",
        "ml-1m/diffrec/ml-1m_clean/test_list.npy": "645010f80c5a4e7b35f154587acacb596cdf3b2502531a7c71e3a8ae020c06c9",
        "ml-1m/diffrec/ml-1m_clean/train_list.npy": "b39010ebf49c1159c71b5a44a2a45081f01c3f653f4221027fef2721cc0b0523",
        "ml-1m/diffrec/ml-1m_clean/valid_list.npy": "93f795d0a8439bb07e644d7e69679a2c1799684bf4b19d10bd415d80a05681b2",
        **_ML1M_RAW_SHA256,
    },
    checksum_prefixes=("ml-1m/diffrec/ml-1m_clean/", "ml-1m/raw/"),
    ground_truth="observed",
    quit_rule="distance",
    env_families=ALL_FAMILIES,
    download=Source(
        name="ml1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        archive="ml-1m.zip",
        strip="ml-1m",
        subdir="raw",
        checksum=("md5", "c4d9eecfca2ab87c1945afe126590906"),
        size_bytes=5_917_549,
        checks=(
            MemberCheck("raw/ratings.dat", min_bytes=20_000_000, n_lines=1_000_209),
            MemberCheck("raw/users.dat", n_lines=6_040),
            MemberCheck("raw/movies.dat", n_lines=3_883),
        ),
    ),
    origin="https://grouplens.org/datasets/movielens/1m/ (+ DiffRec split)",
    licence=_ML1M_LICENCE,
)

ML1M_NOISY = DatasetInfo(
    name="ml1m_noisy",
    env_tag="ML1MNoisy",
    variant_of="ml1m",
    loader="recgym.data.ml1m:load_ml1m",
    loader_kwargs={"variant": "noisy"},
    folder="ml-1m",
    files=_diffrec_split("noisy"),
    presence_files=(_diffrec_split("noisy")[:3],),
    checksums={
        "ml-1m/diffrec/ml-1m_noisy/item_emb.npy": "6eb214c203bee7020f6d5703093075c892058a8e2bc77cae7693e62d1ae8251d",
        "ml-1m/diffrec/ml-1m_noisy/test_list.npy": "ba638f755595545bbd5255d06685e2427c2d2502806e7ccca07fc3d76aa4e9c6",
        "ml-1m/diffrec/ml-1m_noisy/train_list.npy": "fd19bd8593815306dc43ab8d9c8c856c3b3fa11cad0aef0c13ecface801e2dfb",
        "ml-1m/diffrec/ml-1m_noisy/valid_list.npy": "0b56d7cb7d0d057b2d5eea388a33d5c9fef4c89730712aa35d5d0a5ff0e3e1d0",
        **_ML1M_RAW_SHA256,
    },
    checksum_prefixes=("ml-1m/diffrec/ml-1m_noisy/", "ml-1m/raw/"),
    ground_truth="observed",
    quit_rule="distance",
    env_families=("DiffusionDenoise",),
    origin="DiffRec's ml-1m_noisy split of MovieLens-1M",
    licence=_ML1M_LICENCE,
    # DiffRec's released ml-1m_noisy model: 5 steps, scale 0.5, min 0.001, max 0.01, no reweighting
    model_defaults={"diffrec": {"steps": 5, "noise_scale": 0.5, "noise_min": 0.001, "noise_max": 0.01,
                                "reweight": False}},
)

ML1M_EASYRL4REC = DatasetInfo(
    name="ml1m_easyrl4rec",
    env_tag="ML1MEasyRL4Rec",
    variant_of="ml1m",
    loader="recgym.data.ml1m:load_ml1m",
    loader_kwargs={"source": "easyrl4rec"},
    folder="ml-1m",
    files=("ml-1m/raw/ratings.dat", "ml-1m/raw/movies.dat", "ml-1m/raw/users.dat"),
    presence_files=(("ml-1m/raw/ratings.dat",),),
    checksums=dict(_ML1M_RAW_SHA256),
    checksum_prefixes=("ml-1m/raw/",),
    ground_truth="completed",
    quit_rule="distance",
    env_families=("GroundTruthRec", "InteractiveRec"),
    origin="EasyRL4Rec's MovieLens-1M env: 6-factor MF of ratings.dat as the ground truth",
    licence=_ML1M_LICENCE,
)

# ---------------------------------------------------------------------------------------------------- synthetic

SYNTHETIC = DatasetInfo(
    name="synthetic",
    env_tag="Synthetic",
    loader="recgym.data.synthetic:load_synthetic",
    ground_truth="exact",
    quit_rule="distance",
    env_families=ALL_FAMILIES,
    origin="generated by recgym (no files)",
    licence="part of recgym",
    model_defaults={"diffrec": _SMALL_DIFFREC},
)

BUILTIN: tuple[DatasetInfo, ...] = (COAT, YAHOO, KUAIRAND, KUAIREC, ML1M, ML1M_NOISY, ML1M_EASYRL4REC, SYNTHETIC)

for _info in BUILTIN:
    register_dataset(_info)
