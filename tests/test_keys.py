"""Keys and seeds pinned to values recorded before the 0.5.0 redesign.

Members, controls, teacher-output caches, sweep results and run folders are
found again by these keys, and every draw of a run follows these seeds: a
change to any recipe below would retrain or recompute all of them. Each
value was recorded with keras_kd 0.5.0 at commit 3067c04, but for the default
run's folder hash and result key, which changed on purpose when the distill
job gained its `fidelity_curve` setting (a new setting shapes every run's
result: its curves).
"""

import dataclasses

import tensorflow as tf

import keras_kd
from keras_kd import data as data_lib
from keras_kd import digests
from keras_kd import seeds
from keras_kd.data import mnist1d
from keras_kd.data import teacher_cache
from keras_kd.jobs import configs
from keras_kd.jobs import distill
from keras_kd.jobs import teachers


def test_the_default_distill_run_keeps_its_folder_hash_and_result_key():
    config = configs.DistillConfig()
    assert config.run_name() == "resnet8_from_3xresnet20_T4_a0_s0_40d8d7"
    assert distill.result_key(config) == "fab4204fd307ad1a"


def test_digits_keep_their_digest_and_the_default_members_their_key():
    data = data_lib.load("digits")
    assert data.digest == "5ffc9c47dd2c3be8"
    spec = configs.DistillConfig().teacher_spec()
    assert teachers.member_key(spec, data) == "507d637960"
    assert dataclasses.asdict(keras_kd.training.ClassifierSpec(arch="mlp", epochs=1)) == {
        "arch": "mlp", "epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.002,
        "weight_decay": 0.0, "weight_decay_type": "decoupled", "seed": 0, "augment": "identity"}


def test_integer_seeds_are_those_recorded():
    assert seeds.derived_seed(0, "member", 1) == 1555366937
    assert seeds.derived_seed(7, "student") == 1517547893
    assert seeds.derived_seed(3, "gan_latents") == 244149034
    assert configs.DistillConfig().control_spec().seed == 264107915
    spec = configs.DistillConfig().teacher_spec()
    assert keras_kd.training.member_seed(spec, 2) == 65210736
    assert seeds.purpose_seed(0, "view", 2) == 2714540476
    assert seeds.purpose_seed(9, "shuffle") == 2284363394


def test_seed_tensors_are_those_recorded():
    seed = tf.constant([1, 2], tf.int64)
    assert seeds.epoch_seed(5, 3).numpy().tolist() == [6623233893812660943, 3]
    assert seeds.fold_in(seed, 4).numpy().tolist() == [7464880146280614444, 4]
    assert seeds.fold_in(seed, 4, bits=32).numpy().tolist() == [1105988140, 4]


def test_cache_keys_and_policy_descriptions_are_those_recorded():
    describe = data_lib.Policy.parse("crop_flip+mixup").describe((8, 8, 1))
    assert describe == {"policy": "crop_flip+mixup", "flip": True, "crop_padding": 1,
                        "mixup_alpha": 1.0, "mixup_portion": 1.0}
    parts = {"teacher": "t", "data": "d", "num_classes": 10, "policy": describe}
    assert teacher_cache.cache_key(parts) == "ddba127d588a49780483b62d"
    assert data_lib.Policy.parse("shift").describe((40, 1)) == {
        "policy": "shift", "shift_padding": 5}
    assert data_lib.Policy.parse("gan").describe() == {
        "policy": "gan", "synthetic_fraction": 0.5, "synthetic_temperature": None}
    assert data_lib.Policy.parse("noise").describe() == {"policy": "noise", "noise_std": 0.1}
    assert mnist1d._cache_path({"num_train": 500}, "/c") == "/c/mnist1d-f5cb2eef13e5010d.npz"
    assert digests.json_digest({"a": 1}, length=8) == "f9d86028"
