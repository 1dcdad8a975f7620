"""`recgym.data.registry`: the built-in entries, the one name normaliser, validation of new entries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recgym.data.registry import (
    DatasetInfo,
    canonical_name,
    dataset_info,
    dataset_names,
    find_dataset,
    model_defaults,
    official_sha256,
    protocol_key,
    register_dataset,
    registered_datasets,
    unregister_dataset,
)


def test_builtin_entries_in_order_with_their_tags_folders_and_rules():
    assert dataset_names() == ("coat", "yahoo", "kuairand", "kuairec", "ml1m", "ml1m_noisy", "ml1m_easyrl4rec",
                               "synthetic")
    got = {i.name: (i.env_tag, i.folder, i.quit_rule, i.ground_truth) for i in registered_datasets()}
    assert got == {
        "coat": ("Coat", "coat", "distance", "shipped"),
        "yahoo": ("Yahoo", "yahoo_r3", "distance", "completed"),
        "kuairand": ("KuaiRand", "kuairand_pure", "category", "completed"),
        "kuairec": ("KuaiRec", "kuairec", "category", "observed"),
        "ml1m": ("ML1M", "ml-1m", "distance", "observed"),
        "ml1m_noisy": ("ML1MNoisy", "ml-1m", "distance", "observed"),
        "ml1m_easyrl4rec": ("ML1MEasyRL4Rec", "ml-1m", "distance", "completed"),
        "synthetic": ("Synthetic", None, "distance", "exact"),
    }
    families = {i.name: i.env_families for i in registered_datasets()}
    assert families["ml1m_noisy"] == ("DiffusionDenoise",)
    assert families["kuairec"] == families["kuairand"] == ("GroundTruthRec", "InteractiveRec")
    assert sorted(i.name for i in registered_datasets() if i.download is not None) == ["coat", "kuairand",
                                                                                       "kuairec", "ml1m"]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("Coat", "coat"), ("yahoo_r3", "yahoo"), ("Yahoo-R3", "yahoo"), ("KuaiRand-Pure", "kuairand"),
     ("ml-1m", "ml1m"), ("MovieLens-1M", "ml1m"), ("movielens_1m", "ml1m"), ("ML1MNoisy", "ml1m_noisy"),
     ("ml1m_noisy", "ml1m_noisy"), ("ml-1m-noisy", "ml1m_noisy"), ("SYNTHETIC", "synthetic")],
)
def test_one_normaliser_for_names_aliases_and_env_tags(given: str, canonical: str):
    assert canonical_name(given) == canonical
    assert dataset_info(given) is find_dataset(given)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'netflix'; valid names: \['coat', 'yahoo', 'kuairand', "
                                         r"'kuairec', 'ml1m', 'ml1m_noisy', 'ml1m_easyrl4rec', 'synthetic'\]"):
        dataset_info("netflix")
    assert find_dataset("netflix") is None


def test_protocol_key_groups_variants_and_passes_unknown_names_through():
    assert protocol_key("ml1m_noisy") == "ml1m" and protocol_key("ML1M") == "ml1m"
    assert protocol_key("yahoo_r3") == "yahoo"
    assert protocol_key("My_Data") == "mydata"  # a hand-built LoggedDataset nobody registered


def test_model_defaults_are_copies_of_the_old_tables():
    assert model_defaults("yahoo", "mf") == {"epochs": 60}
    assert model_defaults("kuairand", "deepfm") == {"embed_dim": 4, "epochs": 1, "n_negatives": 2, "batch_size": 8192}
    assert model_defaults("ml1m_noisy", "diffrec") == {"steps": 5, "noise_scale": 0.5, "noise_min": 0.001,
                                                       "noise_max": 0.01, "reweight": False}
    assert model_defaults("ml1m", "diffrec") == {} and model_defaults("unregistered", "deepfm") == {}
    d = model_defaults("yahoo", "mf")
    d["epochs"] = 1  # a copy: the registry is untouched
    assert model_defaults("yahoo", "mf") == {"epochs": 60}


def test_official_checksums_are_shared_by_the_ml1m_variants():
    raw = "ml-1m/raw/users.dat"
    assert dataset_info("ml1m").checksums[raw] == dataset_info("ml1m_noisy").checksums[raw] == official_sha256(raw)
    assert official_sha256("coat/train.ascii") == (
        "f9088c6e95fa9a42e8be6a92fc77252b95b969e34ed1299c611420da68680873"
    )
    assert official_sha256("kuairand_pure/log_random_4_22_to_5_08_pure.csv") is None
    # the pseudo-GT matrix fetched by the downloader is checked against the same digest
    extra = dataset_info("coat").download.extras[0]
    assert extra.checksum == ("sha256", official_sha256("coat/" + extra.dest))


def _info(**kw) -> DatasetInfo:
    base = {"name": "toyreg", "env_tag": "ToyReg", "loader": "tests.nowhere:load", "ground_truth": "exact"}
    return DatasetInfo(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"name": "Toy"}, "name must be lower case"), ({"env_tag": "Toy-1"}, "env_tag='Toy-1'"),
     ({"loader": "no_colon"}, "'module:function'"), ({"ground_truth": "guessed"}, "ground_truth='guessed'"),
     ({"quit_rule": "boredom"}, "quit_rule='boredom'"), ({"env_families": ("Foo",)}, "unknown env families"),
     ({"ground_truth": "none"}, "GroundTruthRec needs a ground truth"),
     ({"files": ("a/b.csv",)}, "need a folder")],
)
def test_bad_entries_are_rejected_with_the_field_named(kw: dict, message: str):
    with pytest.raises(ValueError, match=message):
        _info(**kw)


def test_names_aliases_and_tags_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(dataset_info("coat"))
    for kw, taken in (({"aliases": ("yahoo-r3",)}, "yahoo"), ({"env_tag": "ML1MNoisy"}, "ml1m_noisy")):
        with pytest.raises(ValueError, match=f"already names dataset '{taken}'"):
            register_dataset(_info(**kw))
        assert find_dataset("toyreg") is None
    with pytest.raises(ValueError, match="variant_of='nope'"):
        register_dataset(_info(variant_of="nope"))


def test_loader_must_return_the_registered_dataset():
    from recgym.data.synthetic import load_synthetic

    info = register_dataset(_info(loader=load_synthetic, env_families=()))
    try:
        with pytest.raises(ValueError, match="returned a dataset named 'synthetic'.*name='toyreg'"):
            info.load(n_users=10, n_items=60)
    finally:
        unregister_dataset("toyreg")
    assert find_dataset("toyreg") is None


def test_import_recgym_data_stays_light():
    code = ("import sys, recgym.data, recgym.data.registry; from recgym.data import DATASETS; "
            "heavy = [m for m in ('torch', 'pandas', 'recgym.data.base', 'recgym.data.coat') if m in sys.modules]; "
            "assert not heavy, heavy; print(len(DATASETS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8"]
